"""The benchmark stage through the stage runner: the base and a variant measured one after the
other on stories260k, rows and raw records written, speedups computed; a variant the engine
refuses recorded as not runnable without failing the job."""

import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from hub.results.models import BenchmarkRun
from tests.helpers import run_queued

S = Stage.Status
METRICS = (
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2el_ms",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "max_concurrent_requests",
    "max_running_requests",
    "preemptions",
    "weights_bytes",
    "kv_capacity_tokens",
    "peak_memory_bytes",
)


@pytest.fixture
def small(settings):
    settings.BENCHMARK_SCALE = 1 / 32  # chat: 8 requests, 16 tokens in, 8 out
    settings.BENCHMARK_THREADS = 1


def submit_with_variant(
    stories260k, checkpoint, preset: str = "w8a8-int8", profile: str = "chat"
) -> tuple[Job, Variant]:
    """A job on stories260k whose compress stage is done, leaving `checkpoint` as its variant."""
    call_command("import_model", str(stories260k))
    base = BaseModel.objects.get(name="stories260k")
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset(preset)], suite="", benchmark_profile=profile)
    assert run_queued(job, "fetch") == "done"
    variant = Variant.objects.create(
        base=base,
        recipe=job.recipes.get(),
        job=job,
        name=f"stories260k-{preset}",
        scheme="W8A8",
        local_path=str(checkpoint),
    )
    job.stages.filter(kind="compress").update(status=S.DONE)
    job.dispatch()
    return job, variant


def variant_copy(stories260k, tmp_path, quantization: dict | None = None) -> Path:
    out = tmp_path / "variant"
    shutil.copytree(stories260k, out)
    if quantization:
        config = json.loads((out / "config.json").read_text())
        config["quantization_config"] = quantization
        (out / "config.json").write_text(json.dumps(config))
    return out


def test_it_measures_base_and_variant_side_by_side(transactional_db, stories260k, tmp_path, small, settings):
    job, variant = submit_with_variant(stories260k, variant_copy(stories260k, tmp_path))
    assert run_queued(job, "benchmark") == "done", job.stages.get(kind="benchmark").error

    stage = job.stages.get(kind="benchmark")
    base_run = BenchmarkRun.objects.get(base_model=job.base_model)
    variant_run = BenchmarkRun.objects.get(variant=variant)
    for run in (base_run, variant_run):
        assert run.stage == stage and run.job == job and run.runnable and run.reason == ""
        assert (run.profile, run.profile_version) == ("chat", "1") and run.engine_version
        assert run.settings["scale"] == 1 / 32 and run.settings["num_requests"] == 8
        assert run.settings["input_len"] == 16 and run.settings["output_len"] == 8
        assert run.hardware["device"] == "cpu" and run.hardware["cpu"] and run.hardware["torch_threads"] == 1
        assert all(run.metrics.get(k) not in (None, {}) for k in METRICS), run.metrics
        assert run.metrics["completed"] == 8 and run.metrics["output_tokens"] == 64
        records = json.loads(Path(run.records_path).read_text())
        assert sha256_file(Path(run.records_path)) == run.records_sha256
        assert len(records["requests"]) == 8 and records["settings"] == run.settings
    assert base_run.settings == variant_run.settings  # same workload, same dtype
    gains = variant_run.metrics["speedup"]
    assert gains["output_throughput"] == pytest.approx(
        variant_run.metrics["output_throughput"] / base_run.metrics["output_throughput"]
    )
    assert gains["ttft_median"] == pytest.approx(
        base_run.metrics["ttft_ms"]["median"] / variant_run.metrics["ttft_ms"]["median"]
    )
    assert gains["memory"]["weights_bytes"] == 1.0
    assert stage.outputs["runnable"] and stage.outputs["variant_run"] == variant_run.pk
    assert stage.outputs["speedup"]["output_throughput"] == pytest.approx(gains["output_throughput"])
    folder = settings.ARTIFACTS_DIR / "benchmarks" / f"job{job.pk}" / "w8a8-int8-1"
    assert sorted(p.name for p in folder.iterdir()) == ["base.json", "variant.json"]
    assert "benchmark:engine" in Job.objects.get(pk=job.pk).versions
    assert "output token throughput" in stage.log
    assert job.stages.get(kind="publish").status == S.QUEUED


def test_it_records_a_variant_the_engine_cannot_run_as_not_runnable(transactional_db, stories260k, tmp_path, small):
    refused = variant_copy(stories260k, tmp_path, {"quant_method": "bitsandbytes", "load_in_4bit": True})
    job, variant = submit_with_variant(stories260k, refused)
    assert run_queued(job, "benchmark") == "done", job.stages.get(kind="benchmark").error

    base_run = BenchmarkRun.objects.get(base_model=job.base_model)
    assert base_run.runnable and base_run.metrics["output_throughput"] > 0 and base_run.records_sha256
    variant_run = BenchmarkRun.objects.get(variant=variant)
    assert not variant_run.runnable and "not supported" in variant_run.reason
    assert variant_run.metrics == {} and variant_run.records_path == "" and variant_run.records_sha256 == ""
    stage = job.stages.get(kind="benchmark")
    assert stage.outputs["runnable"] is False and stage.outputs["speedup"] == {}
    assert "not runnable here" in stage.log
    assert job.stages.get(kind="publish").status == S.QUEUED


def test_it_fails_clearly_on_an_unknown_profile(transactional_db, stories260k, tmp_path, small):
    job, _ = submit_with_variant(stories260k, variant_copy(stories260k, tmp_path), profile="chatty")
    assert run_queued(job, "benchmark") == S.FAILED
    error = job.stages.get(kind="benchmark").error
    assert "unknown benchmark profile 'chatty'" in error and "Traceback" not in error
    assert not BenchmarkRun.objects.exists()


def test_it_fails_clearly_when_the_profile_does_not_fit_the_model(transactional_db, stories260k, tmp_path, settings):
    settings.BENCHMARK_SCALE = 1 / 4  # rag: 1024 prompt tokens, over stories260k's 512
    job, _ = submit_with_variant(stories260k, variant_copy(stories260k, tmp_path), profile="rag")
    assert run_queued(job, "benchmark") == S.FAILED
    error = job.stages.get(kind="benchmark").error
    assert "exceeds the model's max_model_len 512" in error and "Traceback" not in error
