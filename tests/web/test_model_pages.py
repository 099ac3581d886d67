"""Model pages: overview, recovery with intervals and the gate, benchmarks with charts, the
compare view with its Pareto front, files with sha256, and downloads."""

import hashlib
from html import unescape

from hub.catalog.models import Publication
from hub.results.models import BenchmarkRun, EvalRun
from tests.web.conftest import bench_metrics, write_files


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
    assert '<span class="gate gate-validated">validated</span></h1>' in html
    assert html.count('<td class="verdict gate-validated">validated</td>') == 2  # each task's verdict
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
        recovery_low=0.99,
        recovery_high=1.008,
        diff=0,
        threshold=0.99,
        verdict="validated",
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


def test_it_names_the_model_of_each_benchmark_row_on_a_base_page(client, catalog):
    html = client.get(f"/models/{catalog.llama.pk}/").content.decode()
    assert "<td>org/llama-1b</td><td>NVIDIA H100</td>" in html


def test_it_says_what_a_benchmark_profile_sends(client, catalog):
    BenchmarkRun.objects.create(
        base_model=catalog.llama,
        profile="rag",
        profile_version="1",
        engine_version="0.1",
        hardware={"device": "cpu", "cpu": "AMD EPYC"},
        settings={"profile": "rag", "scale": 0.125, "input_len": 512, "output_len": 32},
        metrics=bench_metrics(700.0, 60.0, 130.0),
    )
    html = client.get(f"/models/{catalog.llama.pk}/").content.decode()
    assert "<td>chat v1 (512 tokens in, 256 out)</td>" in html
    assert "rag v1 (retrieval-augmented generation: 4k in, 256 out), run at scale 0.125: 512 tokens in, 32 out" in html
    html = client.get(f"/models/variants/{catalog.w4.pk}/").content.decode()
    assert html.count("<td>chat v1 (512 tokens in, 256 out)</td>") == 2  # the base's row and the variant's


def test_it_names_metrics_readably_and_explains_them(client, catalog):
    EvalRun.objects.filter(base_model=catalog.llama).update(
        metrics={
            "arc_easy": {"metric": "acc_norm,none", "value": 0.6, "stderr": 0.02, "n": 200},
            "gsm8k": {"metric": "exact_match,strict-match", "value": 0.3, "stderr": 0.02, "n": 100},
            "wikitext": {"metric": "word_perplexity,none", "value": 14.2, "stderr": None, "n": 62},
            "mine": {"metric": "f1_macro,none", "value": 0.5, "stderr": None, "n": 10},
        }
    )
    html = client.get(f"/models/{catalog.llama.pk}/").content.decode()
    assert '<td><span class="metric" title="acc_norm,none">accuracy (length-normalised)</span></td>' in html
    assert 'title="exact_match,strict-match">exact match (strict-match)</span>' in html
    assert 'title="f1_macro,none">f1_macro</span>' in html  # unknown: lm-eval's name
    assert "<dt>word perplexity <code>word_perplexity,none</code></dt><dd>how unexpected" in html
    assert "lower is better" in html and "<dt>f1_macro <code>f1_macro,none</code></dt>" in html

    html = client.get(f"/models/variants/{catalog.w4.pk}/").content.decode()
    assert html.count('<td><span class="metric" title="acc">accuracy</span></td>') == 2  # arc_easy, hellaswag
    assert html.count("<dt>accuracy <code>acc</code></dt>") == 1  # each metric explained once


def test_it_gives_a_base_without_a_repository_commands_that_fetch_its_files(client, catalog, alice, tmp_path):
    page = unescape(client.get(f"/models/{catalog.llama.pk}/").content.decode())
    assert "MODEL_DIR" not in page
    url = f"/models/{catalog.llama.pk}/files/config.json"
    assert f"curl -fL --create-dirs -o llama-1b/config.json http://127.0.0.1:8000{url}\n" in page
    assert client.get(url).status_code == 200  # the link the command fetches
    weights = next(f for f in catalog.llama.files if f["path"] == "model.safetensors")
    assert "sha256sum -c <<'EOF'\n" in page and f"{weights['sha256']}  llama-1b/model.safetensors\nEOF" in page
    assert "python -m engine generate llama-1b " in page and "vllm serve llama-1b</code>" in page
    assert "AutoModelForCausalLM.from_pretrained('llama-1b')" in page

    # a private model's links need the signed-in browser: the page says so rather than give curl
    catalog.private.files = write_files(tmp_path / "secret", {"config.json": b"{}"})
    catalog.private.save()
    client.force_login(alice)
    page = unescape(client.get(f"/models/{catalog.private.pk}/").content.decode())
    assert "save each file listed above into secret-model/" in page and "curl" not in page

    # an unpublished variant's page gives the same commands for its files
    catalog.w4.publications.all().delete()
    page = unescape(client.get(f"/models/variants/{catalog.w4.pk}/").content.decode())
    assert (
        f"-o llama-1b-w4a16-gptq/recipe.yaml http://127.0.0.1:8000/models/variants/{catalog.w4.pk}/files/recipe.yaml"
        in page
    )
    assert "vllm serve llama-1b-w4a16-gptq</code>" in page
