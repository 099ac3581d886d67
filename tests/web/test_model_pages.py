"""Model pages: overview, recovery with intervals and the gate, benchmarks with charts, the
compare view with its Pareto front, files with sha256, and downloads."""

import hashlib

from hub.catalog.models import Publication
from hub.results.models import BenchmarkRun, EvalRun
from tests.web.conftest import bench_metrics


def test_it_shows_a_base_model(client, catalog):
    html = client.get(f"/models/{catalog.llama.pk}/").content.decode()
    assert "LlamaForCausalLM" in html and "1.2B" in html and "apache-2.0" in html
    assert "org/llama-1b-w4a16-gptq" in html and "org/llama-1b-fp8-dynamic" in html  # lineage
    assert "arc_easy" in html  # baseline accuracy
    assert "800" in html  # its benchmark
    assert catalog.llama.files[0]["sha256"] in html
    assert f"/models/{catalog.llama.pk}/compare/" in html


def test_it_says_when_where_and_under_what_load_a_benchmark_ran(client, catalog):
    BenchmarkRun.objects.create(
        base_model=catalog.llama,
        job=catalog.job,
        profile="chat",
        profile_version="1",
        engine_version="0.1",
        hardware={"device": "cpu", "cpu": "AMD EPYC", "cpu_cores": 2},
        metrics={**bench_metrics(700.0, 60.0, 130.0), "load_average": [3.1, 3.45]},
    )
    html = client.get(f"/models/{catalog.llama.pk}/").content.decode()
    assert "AMD EPYC <span" in html and "load 3.45</span>" in html  # the busier end of the run
    assert html.count(f'<a href="/jobs/{catalog.job.pk}/">job {catalog.job.pk}</a>') == 2  # this run and the GPU one
    assert "NVIDIA H100 <span" not in html  # load is only shown for CPU runs


def test_it_shows_a_variant_with_recovery_gate_and_speed(client, catalog):
    html = client.get(f"/models/variants/{catalog.w4.pk}/").content.decode()
    assert "hellaswag" in html and "97.6%" in html and "98.3%" in html
    assert "[-0.02, 0.001]" in html  # the 95% interval
    assert "± 0.004" in html
    assert "validated" in html and "pass" in html
    assert "NVIDIA H100" in html and "this variant (1.50x)" in html
    assert html.count('<svg class="chart"') == 3  # TTFT, TPOT, throughput: base vs variant
    assert "GPTQModifier" in html  # the recipe as run
    assert "&quot;total&quot;: 12.5" in html  # the compression report, escaped
    assert "HF_ENDPOINT=http://" in html and "hf download org/llama-1b-w4a16-gptq --revision aaaa" in html
    assert "vllm serve org/llama-1b-w4a16-gptq" in html and "python -m engine generate" in html
    assert 'href="/org/llama-1b-w4a16-gptq"' in html  # the repository page and its card


def test_it_says_what_is_not_measured_yet(client, catalog):
    html = client.get(f"/models/variants/{catalog.fp8.pk}/").content.decode()
    assert "not measured" in html and "validation pending" in html
    assert "not runnable on this hardware: FP8 needs compute capability 8.9" in html
    assert "no files yet (pending)" in html
    assert "Not published yet" in html


def test_it_hides_private_pages(client, catalog, alice, bob):
    urls = [
        f"/models/{catalog.private.pk}/",
        f"/models/variants/{catalog.secret.pk}/",
        f"/models/{catalog.private.pk}/compare/",
    ]
    client.force_login(bob)
    assert [client.get(u).status_code for u in urls] == [404, 404, 404]
    client.force_login(alice)
    assert [client.get(u).status_code for u in urls] == [200, 200, 200]
    Publication.objects.create(
        variant=catalog.secret, endpoint="local", repo_id="alice/secret-model-w8a16", commit_sha="b" * 40
    )
    html = client.get(f"/models/variants/{catalog.secret.pk}/").content.decode()
    assert "HF_TOKEN=&lt;a token of yours&gt; hf download alice/secret-model-w8a16" in html
    assert "os.environ[&#x27;HF_TOKEN&#x27;]" in html


def test_it_compares_variants_and_marks_the_pareto_front(client, catalog):
    # fp8: smaller speedup than w4 and bigger, but better recovery: both stay on the front
    run = EvalRun.objects.create(
        variant=catalog.fp8, suite="quick", suite_version="1", engine_version="0.1", settings_key="k"
    )
    base_run = EvalRun.objects.filter(base_model=catalog.llama).first()
    run.recoveries.create(
        base_run=base_run,
        task="arc_easy",
        metric="acc",
        base_value=0.6,
        variant_value=0.6,
        recovery=0.999,
        diff=0,
        threshold=0.99,
        passed=True,
    )
    BenchmarkRun.objects.filter(variant=catalog.fp8).update(runnable=True, metrics=bench_metrics(35, 10, 1000))
    html = client.get(f"/models/{catalog.llama.pk}/compare/").content.decode()
    assert html.count('<tr class="front">') == 2
    assert html.count('class="point front"') == 4 and "<polyline" in html  # on both charts
    assert html.count('class="point reference"') == 2 and "size (MB)" in html  # the base, for scale

    # a third variant worse on all three is off the front
    run.recoveries.update(recovery=0.95)
    BenchmarkRun.objects.filter(variant=catalog.fp8).update(metrics=bench_metrics(35, 10, 900))
    html = client.get(f"/models/{catalog.llama.pk}/compare/").content.decode()
    assert html.count('<tr class="front">') == 1


def test_it_downloads_a_file_with_its_sha256(client, catalog):
    entry = next(f for f in catalog.w4.files if f["path"] == "model.safetensors")
    response = client.get(f"/models/variants/{catalog.w4.pk}/files/model.safetensors")
    body = b"".join(response.streaming_content)
    assert response.status_code == 200
    assert hashlib.sha256(body).hexdigest() == entry["sha256"] == response["X-Checksum-Sha256"]
    assert "attachment" in response["Content-Disposition"]
    assert client.get(f"/models/{catalog.llama.pk}/files/config.json").status_code == 200


def test_it_serves_only_recorded_files(client, catalog, tmp_path):
    (tmp_path / "outside.txt").write_text("secret")
    for path in ("../outside.txt", "missing.bin", "%2e%2e/outside.txt"):
        assert client.get(f"/models/variants/{catalog.w4.pk}/files/{path}").status_code == 404


def test_it_hides_private_files(client, catalog, bob):
    catalog.secret.files = catalog.w4.files
    catalog.secret.local_path = catalog.w4.local_path
    catalog.secret.save()
    client.force_login(bob)
    assert client.get(f"/models/variants/{catalog.secret.pk}/files/config.json").status_code == 404
