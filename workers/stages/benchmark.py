"""benchmark: the base and the stage's variant on the job's workload profile, interleaved on
this worker (base, variant, base, variant, ...) for BENCHMARK_ROUNDS rounds (at least 3), each
round on fresh prompts that base and variant share. Every speedup is the median of the rounds'
ratios with a 95% interval (`engine.metrics.speedup_over_rounds`); where the interval includes 1
or the rounds disagree, the verdict is "inconclusive on this machine" rather than a figure.

A variant this hardware (or this engine) cannot run is recorded as not runnable, with the
reason, and the stage still succeeds: that is a finding about the variant, not a failure.
"""

import json
import os
import shutil
from pathlib import Path

from django.conf import settings

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import Variant
from hub.results.models import BenchmarkRun
from workers.runner import StageError, StageResult


def benchmark(stage, ctx) -> StageResult:
    import torch

    from common.work import Cancelled
    from engine.bench import compare
    from engine.hardware import describe_hardware
    from engine.metrics import format_table, speedup_over_rounds
    from engine.profiles import CPU_SCALE, get_profile
    from engine.version import engine_version

    job, base, recipe = stage.job, stage.job.base_model, stage.recipe
    variant = Variant.objects.filter(job=job, recipe=recipe).order_by("-created_at").first()
    if not base.local_path:
        raise StageError(f"{base.name} has no verified snapshot on this hub (did fetch run?)")
    if variant is None or not variant.local_path:
        raise StageError(f"job {job.pk} has no {recipe} variant to benchmark (did compress run?)")
    try:
        profile = get_profile(job.benchmark_profile)
    except ValueError as exc:
        raise StageError(str(exc)) from None

    rounds = settings.BENCHMARK_ROUNDS
    threads = torch.get_num_threads()
    if settings.BENCHMARK_THREADS:
        torch.set_num_threads(settings.BENCHMARK_THREADS)
    try:
        hardware = describe_hardware()
        profile = profile.scaled(settings.BENCHMARK_SCALE or (CPU_SCALE if hardware["device"] == "cpu" else 1.0))
        ctx.logger.info(
            "benchmarking %s and %s on %s v%s (scale %g), %d interleaved rounds, on %s",
            base.name,
            variant.name,
            profile.name,
            profile.version,
            profile.scale,
            rounds,
            hardware.get("gpu_name") or hardware["cpu"],
        )
        try:
            # the variant computes in the dtype its base ran in (compare sees to it)
            base_m, variant_m = compare(
                Path(base.local_path),
                Path(variant.local_path),
                profile,
                rounds,
                base_name=base.name,
                variant_name=variant.name,
                variant_scheme=variant.scheme or None,
                progress=ctx.progress,
                cancelled=ctx.cancelled,
            )
            if not base_m.runnable:
                raise StageError(f"the base {base.name} cannot run here: {base_m.reason}")
        except Cancelled:
            raise StageError("cancelled") from None
        except ValueError as exc:  # the engine's refusals: bad weights, a profile longer than the model allows
            raise StageError(f"{profile.name}: {exc}") from None
    finally:
        torch.set_num_threads(threads)

    ctx.logger.info("%s", format_table([base_m, variant_m]))
    if not variant_m.runnable:
        ctx.logger.info("%s is not runnable here: %s", variant.name, variant_m.reason)
    gains = speedup_over_rounds(base_m.metrics, variant_m.metrics) if variant_m.runnable else None
    verdict = ""
    if gains:
        for b, v in zip(base_m.metrics["rounds"], variant_m.metrics["rounds"]):
            ctx.logger.info(
                "round %d: base %.1f, variant %.1f output tokens/s; load average %s, %s",
                b["round"] + 1,
                b["output_throughput"],
                v["output_throughput"],
                b["load_average"],
                v["load_average"],
            )
        tp = gains.get("output_throughput")
        verdict = tp["summary"] if tp else "not measured: a round completed no request"
        ctx.logger.info("speedup (output tokens/s, %d rounds): %s", gains["rounds"], verdict)
    folder, digests = _save_records(stage, {"base": base_m, "variant": variant_m})
    version = engine_version()
    outputs = {
        "profile": profile.name,
        "profile_version": profile.version,
        "scale": profile.scale,
        "base_run": None,
        "variant_run": None,
        "base_output_throughput": base_m.metrics["output_throughput"],
        "variant_output_throughput": variant_m.metrics.get("output_throughput"),
        "runnable": variant_m.runnable,
        "reason": variant_m.reason,
        "rounds": len(base_m.metrics.get("rounds") or [base_m.metrics]),
        "verdict": verdict,
        "speedup": {k: v for k, v in (gains or {}).items() if k not in ("memory", "levels")},
    }

    def record() -> None:
        common = dict(
            job=job,
            stage=stage,
            profile=profile.name,
            profile_version=profile.version,
            engine_version=version,
            hardware=hardware,
        )
        base_run = BenchmarkRun.objects.create(
            base_model=base,
            **common,
            settings=base_m.settings,
            metrics=base_m.metrics,
            records_path=str(folder / "base.json"),
            records_sha256=digests["base"],
        )
        variant_run = BenchmarkRun.objects.create(
            variant=variant,
            **common,
            settings=variant_m.settings,
            metrics={**variant_m.metrics, "speedup": gains} if gains else {},
            runnable=variant_m.runnable,
            reason=variant_m.reason[:500],
            records_path=str(folder / "variant.json") if variant_m.runnable else "",
            records_sha256=digests.get("variant", ""),
        )
        outputs["base_run"], outputs["variant_run"] = base_run.pk, variant_run.pk

    return StageResult(
        outputs=outputs, record=record, versions={"benchmark:engine": version, "benchmark:torch": torch.__version__}
    )


def _save_records(stage, measurements: dict) -> tuple[Path, dict[str, str]]:
    """Each model's per-request records as JSON, in one folder per attempt written aside and
    renamed into place; returns the folder and each file's sha256."""
    name = f"{stage.recipe.name}-{stage.attempt}"
    folder = settings.ARTIFACTS_DIR / "benchmarks" / f"job{stage.job_id}" / name
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digests = {}
    for key, m in measurements.items():
        if not m.runnable:
            continue
        path = tmp / f"{key}.json"
        path.write_text(
            json.dumps({"model": m.model, "scheme": m.scheme, "settings": m.settings, "requests": m.records()})
        )
        digests[key] = sha256_file(path)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder, digests
