"""The publish stage: a variant made by the real compress stage goes up through
huggingface_hub's upload_folder into the live hub (and to another hub the job names), comes
back byte for byte through snapshot_download, and loads in transformers from HF_ENDPOINT."""

import hashlib
import html
import json
import re
import shlex
import subprocess
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, snapshot_download

from hub.catalog.models import Publication, Variant
from hub.hfapi.models import Repo
from hub.jobs.models import Stage
from hub.results.models import BenchmarkRun, EvalRun, Recovery
from tests.helpers import folder_hashes, load_from_hub, paste, run_queued, submit_on_stories260k


@pytest.fixture
def variant_job(hub_url, alice, stories260k, settings, fixtures_dir):
    """A job of alice's whose fetch and compress stages ran for real: w8a8-int8 on stories260k."""
    settings.CALIBRATION_DATASET = str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt")
    settings.CALIBRATION_SAMPLES, settings.CALIBRATION_SEQ_LEN = 4, 64
    settings.PUBLISH_HF_ENDPOINT = hub_url  # the operator's external Hub is this one again, under another name
    job = submit_on_stories260k(stories260k, owner=alice, publish_targets=[f"{hub_url} alice/elsewhere"])
    assert run_queued(job, "fetch") == "done"
    assert run_queued(job, "compress") == "done", job.stages.get(kind="compress").error
    return job


@pytest.mark.slow
def test_it_publishes_what_was_measured_and_clients_get_it_back(variant_job, hub_url, alice_token, settings, tmp_path):
    settings.PUBLISH_HF_TOKEN = alice_token  # the "external" hub is this one again, under another name
    assert run_queued(variant_job, "publish") == "done", variant_job.stages.get(kind="publish").error

    variant = Variant.objects.get(job=variant_job)
    local, external = (Publication.objects.get(variant=variant, endpoint=e) for e in ("local", hub_url))
    assert local.repo_id == "alice/stories260k-w8a8-int8" and external.repo_id == "alice/elsewhere"
    assert local.url == f"{hub_url}/alice/stories260k-w8a8-int8"
    assert Repo.objects.get(namespace="alice", name="stories260k-w8a8-int8").head.sha == local.commit_sha
    assert not Repo.objects.get(namespace="alice", name="stories260k-w8a8-int8").private
    tags = HfApi(endpoint=hub_url).list_repo_refs(local.repo_id).tags
    assert [(t.name, t.target_commit) for t in tags] == [(f"job-{variant_job.pk}", local.commit_sha)]

    folder = Path(
        snapshot_download(local.repo_id, revision=local.commit_sha, endpoint=hub_url, cache_dir=tmp_path / "c")
    )
    got = folder_hashes(folder)
    recorded = {f["path"]: f["sha256"] for f in variant.files}
    assert {p: got[p] for p in recorded} == recorded
    assert {"model.safetensors", "config.json", "recipe.yaml", "tokenizer.json", "README.md", "SHA256SUMS"} <= set(
        recorded
    )
    sums = dict(reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sums == {f["path"]: f["sha256"] for f in variant.files if f["path"] != "SHA256SUMS"}
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "stories260k" and card.data.base_model_relation == "quantized"
    assert "Not measured: the job ran no evaluation suite." in card.text
    assert "Not measured: the job ran no benchmark." in card.text
    assert (
        f"| `model.safetensors` | {(folder / 'model.safetensors').stat().st_size:,} | `{recorded['model.safetensors']}` |"
        in card.text
    )

    show = "type(remote).__name__, remote.config.quantization_config.quant_method.value"
    assert load_from_hub(hub_url, local.repo_id, variant.local_path, tmp_path, show) == [
        "loaded",
        "LlamaForCausalLM",
        "compressed-tensors",
    ]


@pytest.mark.slow
def test_it_shows_download_and_run_commands_that_work(variant_job, hub_url, alice_token, settings, tmp_path):
    """The commands the variant's page offers, pasted into a shell as they are."""
    settings.PUBLISH_HF_TOKEN = alice_token
    assert run_queued(variant_job, "publish") == "done", variant_job.stages.get(kind="publish").error
    variant = Variant.objects.get(job=variant_job)
    page = urllib.request.urlopen(f"{hub_url}/models/variants/{variant.pk}/").read().decode()
    commands = {
        html.unescape(title).strip(): html.unescape(code)
        for title, code in re.findall(r"<figcaption>(.*?)<button.*?<pre><code>(.*?)</code></pre>", page, re.S)
    }
    download, generate = commands["hf (huggingface_hub)"], commands["our engine"]
    load = commands["transformers"] + "\nprint(model.config.quantization_config.quant_method.value)"

    outputs = []
    for command in (download, generate):  # downloads need no HF_HUB_DISABLE_XET
        out = paste(command, tmp_path)
        assert out.returncode == 0, f"{command}\n{out.stderr[-3000:]}"
        outputs.append(out.stdout)
    assert "model.safetensors: OK" in outputs[0]  # the download checked against the repository's SHA256SUMS
    recorded = {f["path"]: f["sha256"] for f in variant.files}
    got = folder_hashes(tmp_path / "stories260k-w8a8-int8")
    assert {p: got.get(p) for p in recorded} == recorded
    assert json.loads(outputs[1])["token_ids"]
    out = paste(f"python -c {shlex.quote(load)}", tmp_path)
    assert out.returncode == 0 and out.stdout.split() == ["compressed-tensors"], out.stderr[-3000:]


def test_it_writes_measured_results_into_the_card(recorded_variant_job, hub_url, alice_token, settings):
    """Recovery with its intervals, the benchmark side by side with the base, and the exact
    settings, from whatever rows the validate and benchmark stages left; a variant that failed
    its gate stays on this hub only."""
    variant = Variant.objects.get(job=recorded_variant_job)
    settings_ = {"suite": "quick", "num_fewshot": 0, "limit": 100, "dtype": "float32"}
    common = dict(
        suite="quick",
        suite_version="3",
        engine_version="0.1.0+abc",
        settings=settings_,
        settings_key="k" * 64,
        job=recorded_variant_job,
    )
    base_run = EvalRun.objects.create(
        base_model=variant.base,
        metrics={"arc_easy": {"metric": "acc", "value": 0.5, "stderr": 0.05, "n": 100}},
        results={"configs": {"arc_easy": {"dataset_path": "allenai/ai2_arc"}}},
        **common,
    )
    run = EvalRun.objects.create(
        variant=variant,
        metrics={"arc_easy": {"metric": "acc", "value": 0.49, "stderr": 0.05, "n": 100}},
        results={"configs": {"arc_easy": {"dataset_path": "allenai/ai2_arc"}}},
        **common,
    )
    Recovery.objects.create(
        variant_run=run,
        base_run=base_run,
        task="arc_easy",
        metric="acc",
        base_value=0.5,
        variant_value=0.49,
        recovery=0.98,
        recovery_low=0.9722,
        recovery_high=0.9878,
        diff=-0.01,
        diff_stderr=0.002,
        ci_low=-0.0139,
        ci_high=-0.0061,
        threshold=0.99,
        verdict="failed",
    )
    bench = dict(
        stage=recorded_variant_job.stages.get(kind="compress"),
        profile="chat",
        profile_version="1",
        engine_version="0.1",
        hardware={"cpu": "test CPU"},
    )
    BenchmarkRun.objects.create(
        base_model=variant.base, metrics={"ttft_ms": {"median": 40.0}, "output_throughput": 800.0}, **bench
    )
    BenchmarkRun.objects.create(
        variant=variant, metrics={"ttft_ms": {"median": 30.0}, "output_throughput": 1200.0}, **bench
    )
    Variant.objects.filter(pk=variant.pk).update(gate=Variant.Gate.FAILED)
    settings.PUBLISH_HF_TOKEN = alice_token

    assert run_queued(recorded_variant_job, "publish") == "done", recorded_variant_job.stages.get(kind="publish").error
    local = Publication.objects.get(variant=variant)  # and none elsewhere: the gate failed
    assert local.endpoint == "local" and not Repo.objects.filter(name="elsewhere").exists()
    api = HfApi(endpoint=hub_url)
    card = ModelCard.load(api.hf_hub_download(local.repo_id, "README.md"))
    text = card.text
    assert (
        "| arc_easy | acc | 0.5000 ± 0.0500 | 0.4900 ± 0.0500 | 98.0% [97.22%, 98.78%] | -0.0100 [-0.0139, -0.0061] "
        "| 99% | failed |" in text
    )
    assert "| base | chat v1 | test CPU | 40.00 | not measured |" in text
    assert "| this model | chat v1 | test CPU | 30.00 | not measured |" in text and "1200.00" in text
    assert '"limit": 100' in text and "Suite `quick` version 3, engine 0.1.0+abc" in text
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("allenai/ai2_arc", "acc", 0.49)
    entries = api.hf_hub_download(local.repo_id, ".eval_results/quick.yaml")
    assert "allenai/ai2_arc" in open(entries).read()
    assert Variant.objects.get(pk=variant.pk).files == sorted(
        Variant.objects.get(pk=variant.pk).files, key=lambda f: f["path"]
    )
    readme = next(f for f in Variant.objects.get(pk=variant.pk).files if f["path"] == "README.md")
    assert (
        readme["sha256"]
        == hashlib.sha256(open(api.hf_hub_download(local.repo_id, "README.md"), "rb").read()).hexdigest()
    )


def test_it_checksums_every_file_it_publishes(recorded_variant_job, hub_url, alice_token, settings, tmp_path):
    """SHA256SUMS covers the card and results publish writes beside the measured files, so that
    `sha256sum -c SHA256SUMS` in a downloaded folder checks all of it; the catalog records the
    same files."""
    variant = Variant.objects.get(job=recorded_variant_job)
    EvalRun.objects.create(
        variant=variant,
        job=recorded_variant_job,
        suite="quick",
        suite_version="3",
        engine_version="0.1",
        settings_key="k" * 64,
        metrics={"arc_easy": {"metric": "acc", "value": 0.49, "stderr": 0.05, "n": 100}},
    )
    BenchmarkRun.objects.create(
        variant=variant,
        stage=recorded_variant_job.stages.get(kind="compress"),
        profile="chat",
        profile_version="1",
        engine_version="0.1",
        metrics={"output_throughput": 1200.0},
    )
    settings.PUBLISH_HF_TOKEN = alice_token

    assert run_queued(recorded_variant_job, "publish") == "done", recorded_variant_job.stages.get(kind="publish").error
    local = Publication.objects.get(variant=variant, endpoint=Publication.LOCAL)
    folder = Path(
        snapshot_download(local.repo_id, revision=local.commit_sha, endpoint=hub_url, cache_dir=tmp_path / "c")
    )
    got = folder_hashes(folder)
    sums = dict(reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(got) - {"SHA256SUMS", ".gitattributes"}
    assert {"README.md", "lm_eval_results.json", "benchmark.json", ".eval_results/quick.yaml", "config.json"} <= set(
        sums
    )
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    recorded = {f["path"]: f["sha256"] for f in Variant.objects.get(pk=variant.pk).files}
    assert recorded == {p: h for p, h in got.items() if p != ".gitattributes"}


def test_it_refuses_to_publish_files_that_changed_since_they_were_measured(recorded_variant_job, hub_url):
    variant = Variant.objects.get(job=recorded_variant_job)
    config = Path(variant.local_path) / "config.json"
    config.write_text(config.read_text().replace("llama", "llama "))  # one byte more than was measured
    assert run_queued(recorded_variant_job, "publish") == "failed"
    stage = recorded_variant_job.stages.get(kind="publish")
    assert "config.json no longer matches its sha256" in stage.error and stage.status == Stage.Status.FAILED
    assert not Repo.objects.filter(name__startswith="stories260k").exists()
    assert not (Path(Variant.objects.get(job=recorded_variant_job).local_path) / "README.md").exists()


def test_it_asks_for_a_token_before_publishing_elsewhere(recorded_variant_job, hub_url, settings):
    settings.PUBLISH_HF_TOKEN = ""
    assert run_queued(recorded_variant_job, "publish") == "failed"
    assert "set HUB_PUBLISH_HF_TOKEN" in recorded_variant_job.stages.get(kind="publish").error
    assert not Publication.objects.exists()
