"""The benchmark stage through the stage runner: the base and a variant measured in interleaved
rounds on stories260k, rows, rounds and raw records written, speedups given with an interval; a
round slowed on purpose makes the verdict inconclusive; a variant the engine refuses recorded as
not runnable without failing the job."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command

import engine.bench
from engine.bench import RunResult
from engine.metrics import REPORTED, compute_metrics
from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from hub.results.models import BenchmarkRun
from tests.helpers import run_queued

S = Stage.Status


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
        assert run.settings["input_len"] == 16 and run.settings["output_len"] == 8 and run.settings["rounds"] == 3
        assert run.hardware["device"] == "cpu" and run.hardware["cpu"] and run.hardware["torch_threads"] == 1
        assert all(run.metrics.get(k) not in (None, {}) for k in REPORTED), run.metrics
        assert run.metrics["completed"] == 8 and run.metrics["output_tokens"] == 64
        records = json.loads(Path(run.records_path).read_text())
        assert sha256_file(Path(run.records_path)) == run.records_sha256
        assert len(records["requests"]) == 3 * 8 and records["settings"] == run.settings  # 3 rounds
    assert base_run.settings == variant_run.settings  # same workload, same dtype
    gains = variant_run.metrics["speedup"]
    assert gains["memory"]["weights_bytes"] == 1.0
    assert stage.outputs["runnable"] and stage.outputs["variant_run"] == variant_run.pk
    assert stage.outputs["speedup"]["output_throughput"] == gains["output_throughput"]
    assert stage.outputs["verdict"] == gains["output_throughput"]["summary"] and stage.outputs["rounds"] == 3
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
    assert stage.outputs["runnable"] is False and stage.outputs["speedup"] == {} and stage.outputs["verdict"] == ""
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


def test_it_interleaves_rounds_on_fresh_prompts_and_stores_each_with_the_interval(
    transactional_db, stories260k, tmp_path, small, settings, monkeypatch
):
    settings.BENCHMARK_ROUNDS = 4
    calls = []
    run_workload = engine.bench.run_workload

    def spy(llm, workload, prompts=None, **kwargs) -> RunResult:
        calls.append((llm.config.model_dir.name, workload.seed, prompts))
        return run_workload(llm, workload, prompts, **kwargs)

    monkeypatch.setattr(engine.bench, "run_workload", spy)
    job, variant = submit_with_variant(stories260k, variant_copy(stories260k, tmp_path))
    assert run_queued(job, "benchmark") == "done", job.stages.get(kind="benchmark").error

    # base, variant, base, variant...: each round's prompts shared by both, fresh every round
    assert [name == "variant" for name, _, _ in calls] == [False, True] * 4
    assert [seed for _, seed, _ in calls] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(calls[i][2] == calls[i + 1][2] for i in range(0, 8, 2))
    assert len({json.dumps(p) for _, _, p in calls}) == 4

    base_run = BenchmarkRun.objects.get(base_model=job.base_model)
    variant_run = BenchmarkRun.objects.get(variant=variant)
    for run in (base_run, variant_run):
        rounds = run.metrics["rounds"]
        assert [r["round"] for r in rounds] == [0, 1, 2, 3] and [r["seed"] for r in rounds] == [0, 1, 2, 3]
        assert all(r["completed"] == 8 and len(r["load_average"]) == 2 for r in rounds)
        assert all(run.metrics.get(k) not in (None, {}) for k in REPORTED), run.metrics
        headline = rounds[run.metrics["headline_round"]]
        assert run.metrics["output_throughput"] == headline["output_throughput"]  # a round that ran
        records = json.loads(Path(run.records_path).read_text())["requests"]
        assert len(records) == 32 and sorted({r["round"] for r in records}) == [0, 1, 2, 3]

    gains = variant_run.metrics["speedup"]
    assert gains["rounds"] == 4 and "Student-t" in gains["method"]
    tp = gains["output_throughput"]
    ratios = [
        v["output_throughput"] / b["output_throughput"]
        for b, v in zip(base_run.metrics["rounds"], variant_run.metrics["rounds"])
    ]
    assert tp["ratios"] == pytest.approx(ratios)
    assert tp["median"] == pytest.approx((sorted(ratios)[1] + sorted(ratios)[2]) / 2)
    assert tp["low"] <= tp["median"] <= tp["high"] and tp["verdict"] in ("faster", "slower", "inconclusive")
    assert len(gains["ttft_median"]["ratios"]) == 4
    stage = job.stages.get(kind="benchmark")
    assert f"speedup (output tokens/s, 4 rounds): {tp['summary']}" in stage.log
    assert "round 4: base" in stage.log


def stretched(result: RunResult, factor: float) -> RunResult:
    """The run as if the machine had been `factor` times slower throughout it."""
    records = [
        replace(r, start=r.start * factor, token_times=[t * factor for t in r.token_times]) for r in result.records
    ]
    metrics = compute_metrics(records, result.metrics["duration_s"] * factor)
    metrics.update(concurrency=result.metrics["concurrency"], preemptions=result.metrics["preemptions"])
    return replace(result, records=records, metrics=metrics)


def test_it_calls_a_speedup_from_one_slow_base_round_inconclusive(
    transactional_db, stories260k, tmp_path, small, monkeypatch
):
    # the variant is the base's copy: what tells them apart is a base round measured while the
    # machine was busy, a third as fast, as once showed a "3.00x" variant in the catalog
    run_workload = engine.bench.run_workload
    slowed = []

    def busy_first_base_round(llm, workload, prompts=None, **kwargs) -> RunResult:
        result = run_workload(llm, workload, prompts, **kwargs)
        if llm.config.model_dir.name != "variant" and not slowed:
            slowed.append(result.metrics["output_throughput"])
            return stretched(result, 3.0)
        return result

    monkeypatch.setattr(engine.bench, "run_workload", busy_first_base_round)
    job, variant = submit_with_variant(stories260k, variant_copy(stories260k, tmp_path))
    assert run_queued(job, "benchmark") == "done", job.stages.get(kind="benchmark").error

    base_run = BenchmarkRun.objects.get(base_model=job.base_model)
    variant_run = BenchmarkRun.objects.get(variant=variant)
    assert base_run.metrics["rounds"][0]["output_throughput"] == pytest.approx(slowed[0] / 3)
    tp = variant_run.metrics["speedup"]["output_throughput"]
    assert tp["verdict"] == "inconclusive" and tp["summary"].startswith("inconclusive on this machine")
    assert variant_run.metrics["speedup"]["tpot_median"]["verdict"] == "inconclusive"
    stage = job.stages.get(kind="benchmark")
    assert stage.outputs["verdict"].startswith("inconclusive on this machine")
    assert "inconclusive on this machine" in stage.log
