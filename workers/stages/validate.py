"""baseline and validate: evaluate the base and each variant on the job's suite with identical
settings, and judge each variant by its per-task recovery.

A baseline is shared: any earlier run of the same base revision with the same settings key
(suite and version, engine version, few-shot seed, chat template, dtype, data, ...) is reused
instead of evaluated again. A variant is evaluated with the settings of its base's run, and
compared only when the two keys are equal.
"""

import dataclasses
import os
import shutil
from pathlib import Path

from django.conf import settings

from common.checkpoint_files import NotACheckpointFile
from hub.catalog.models import Variant
from hub.results.models import EvalRun, Recovery
from workers.runner import StageError, StageResult
from workers.stages.suites import evaluation_suite


def baseline(stage, ctx) -> StageResult:
    from evals import SuiteError

    job, base = stage.job, stage.job.base_model
    if not base.local_path:
        raise StageError(f"{base.name} has no verified snapshot on this hub (did fetch run?)")
    try:
        plan = _prepare(Path(base.local_path), job)
    except SuiteError as exc:
        raise StageError(f"suite {job.suite}: {exc}") from None
    cached = _base_run(base, plan.settings_key)
    if cached:
        ctx.logger.info("reusing baseline run %s of %s (settings %s)", cached.pk, base.name, plan.settings_key[:12])
        return StageResult(
            outputs={
                "eval_run": cached.pk,
                "reused": True,
                "settings_key": plan.settings_key,
                "metrics": _values(cached.metrics),
            },
            versions=_versions(plan),
        )
    ctx.logger.info(
        "evaluating %s on %s v%s (settings %s)", base.name, plan.suite.name, plan.suite.version, plan.settings_key[:12]
    )
    result, folder, digest = _evaluate(plan, stage, ctx)
    outputs = {"eval_run": None, "reused": False, "settings_key": plan.settings_key, "metrics": _values(result.metrics)}

    def record() -> None:
        run = _create_run(result, folder, digest, stage, base_model=base, model_revision=base.resolved_sha)
        outputs["eval_run"] = run.pk  # the runner stores outputs after record(), in the same transaction

    return StageResult(outputs=outputs, record=record, versions=_versions(plan))


def validate(stage, ctx) -> StageResult:
    from evals import SettingsMismatch, SuiteError, compare, gate_report
    from evals.recovery import settings_diff

    job, base, recipe = stage.job, stage.job.base_model, stage.recipe
    variant = Variant.objects.filter(job=job, recipe=recipe).order_by("-created_at").first()
    if variant is None or not variant.local_path:
        raise StageError(f"job {job.pk} has no {recipe} variant to validate (did compress run?)")
    try:
        base_plan = _prepare(Path(base.local_path), job)
        # the variant runs with what its base ran with (the dtype "auto" chose for the base, too)
        plan = _prepare(Path(variant.local_path), job, dtype=base_plan.settings["dtype"])
    except SuiteError as exc:
        raise StageError(f"suite {job.suite}: {exc}") from None
    if plan.settings_key != base_plan.settings_key:
        raise StageError(
            f"{variant.name} cannot be evaluated with its base's settings: "
            + "; ".join(settings_diff(base_plan.settings, plan.settings))
        )
    base_run = _base_run(base, plan.settings_key)
    if base_run is None:
        raise StageError(
            f"no baseline of {base.name} with settings {plan.settings_key[:12]} (the engine or the suite changed "
            "since it ran?); retry the baseline stage"
        )
    base_result = _result_of(base_run)
    existing = EvalRun.objects.filter(variant=variant, settings_key=plan.settings_key).first()
    if existing:
        ctx.logger.info("reusing evaluation run %s of %s", existing.pk, variant.name)
        result, folder, digest = _result_of(existing), None, None
    else:
        ctx.logger.info(
            "evaluating %s on %s v%s (settings %s)",
            variant.name,
            plan.suite.name,
            plan.suite.version,
            plan.settings_key[:12],
        )
        result, folder, digest = _evaluate(plan, stage, ctx)
    threshold = plan.suite.recovery_threshold or recipe.recovery_threshold
    try:
        recoveries = compare(base_result, result, threshold)
    except SettingsMismatch as exc:
        raise StageError(f"{variant.name} vs {base.name}: {exc}") from None
    report = gate_report(recoveries, threshold)
    ctx.logger.info("%s: %s", variant.name, report["summary"])
    outputs = {
        "eval_run": existing.pk if existing else None,
        "base_run": base_run.pk,
        "gate": report["summary"],
        "recovery": {r.task: round(r.recovery, 4) for r in recoveries},
    }

    def record() -> None:
        run = existing or _create_run(result, folder, digest, stage, variant=variant)
        Recovery.record(run, base_run, recoveries)
        Variant.objects.filter(pk=variant.pk).update(
            gate=Variant.Gate(report["verdict"]),
            gate_report={
                **report,
                "suite": plan.suite.name,
                "suite_version": plan.suite.version,
                "settings_key": plan.settings_key,
                "base_run": base_run.pk,
                "variant_run": run.pk,
            },
        )
        outputs["eval_run"] = run.pk

    return StageResult(outputs=outputs, record=record, versions=_versions(plan))


def _prepare(model_dir: Path, job, **changes):
    from evals import EvalOptions, prepare

    suite = evaluation_suite(job)
    options = EvalOptions(data_dir=settings.EVAL_DATA_DIR, chat_template=suite.chat_template)
    options = dataclasses.replace(options, **changes)
    try:
        return prepare(model_dir, suite, options)
    except NotACheckpointFile as exc:
        raise StageError(str(exc)) from None


def _base_run(base, key: str) -> EvalRun | None:
    return (
        EvalRun.objects.filter(base_model=base, model_revision=base.resolved_sha, settings_key=key)
        .order_by("-created_at")
        .first()
    )


def _evaluate(plan, stage, ctx):
    from engine import UnsupportedModelError
    from evals import Cancelled, SuiteError, run
    from evals.store import RequestStore
    from hub.catalog.checkpoints import manifest_sha

    # scored requests are kept by the model's content and the settings as they complete, so a
    # retry of a killed attempt scores only what is missing
    model = (
        stage.job.base_model
        if stage.recipe_id is None
        else Variant.objects.filter(job=stage.job, recipe=stage.recipe).latest("created_at")
    )
    store = RequestStore.open(settings.ARTIFACTS_DIR / "eval-requests", manifest_sha(model.files), plan.settings_key)
    try:
        result = run(plan, progress=ctx.progress, cancelled=ctx.cancelled, store=store)
    except Cancelled:
        raise StageError("cancelled") from None
    except UnsupportedModelError as exc:
        raise StageError(f"{plan.model_dir.name}: {exc}") from None
    except SuiteError as exc:
        # an air-gapped hub meets this first: with no local data, tasks read the Hugging Face hub
        hint = (
            ""
            if settings.EVAL_DATA_DIR or all(t.data.startswith("local:") for t in plan.tasks)
            else " (to run offline, set HUB_EVAL_DATA_DIR on the worker to a folder laid out <task>/<split>.jsonl, then retry)"
        )
        raise StageError(f"{plan.model_dir.name}: {exc}{hint}") from None
    # one folder per attempt, written aside and renamed into place
    name = f"{stage.kind}-{stage.recipe.name if stage.recipe_id else 'base'}-{stage.attempt}"
    folder = settings.ARTIFACTS_DIR / "evals" / f"job{stage.job_id}" / name
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    digest = result.save(tmp / "results.json", tmp / "samples.jsonl.gz")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    store.remove()
    ctx.logger.info("requests: %(scored)d scored, %(restored)d restored from an earlier attempt", result.requests)
    ctx.logger.info("%s", ", ".join(f"{t} {m['value']:.4f}" for t, m in result.metrics.items()))
    return result, folder, digest


def _create_run(result, folder: Path, digest: str, stage, **model) -> EvalRun:
    return EvalRun.objects.create(
        **model,
        job=stage.job,
        stage=stage,
        suite=result.suite,
        suite_version=result.suite_version,
        engine_version=result.engine_version,
        settings=result.settings,
        settings_key=result.settings_key,
        metrics=result.metrics,
        results=result.results,
        samples_path=str(folder / "samples.jsonl.gz"),
        samples_sha256=digest,
        duration_s=result.duration_s,
    )


def _result_of(run: EvalRun):
    from evals import EvalResult
    from evals.run import read_samples

    try:
        samples = read_samples(Path(run.samples_path), run.samples_sha256)
    except (OSError, ValueError) as exc:
        raise StageError(f"evaluation run {run.pk}: its per-sample log is unusable ({exc})") from None
    return EvalResult(
        model=str(run.model),
        suite=run.suite,
        suite_version=run.suite_version,
        engine_version=run.engine_version,
        settings=run.settings,
        settings_key=run.settings_key,
        metrics=run.metrics,
        results=run.results,
        samples=samples,
        duration_s=run.duration_s or 0.0,
    )


def _values(metrics: dict) -> dict:
    return {task: round(m["value"], 4) for task, m in metrics.items()}


def _versions(plan) -> dict:
    import datasets
    import lm_eval

    return {
        "evals:engine": plan.settings["engine_version"],
        "evals:lm-eval": lm_eval.__version__,
        "evals:datasets": datasets.__version__,
    }
