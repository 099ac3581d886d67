"""The baseline and validate stages through the stage runner, on stories260k and a perturbed copy
standing in for a compressed variant, with task data from the local fixtures and no network."""

from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from hub.results.models import EvalRun, Recovery
from tests.evals.conftest import TINY_YAML, no_network
from tests.helpers import run_queued
from workers.stages.validate import _result_of

S = Stage.Status


@pytest.fixture
def suite_file(tmp_path, settings, data_dir, isolated_storage):
    settings.EVAL_DATA_DIR = data_dir
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    assert len(str(path)) <= 100  # Job.suite
    return str(path)


def services(settings) -> tuple:
    """The broker's (host, port), which the stage runner may reach while the network is off."""
    url = urlsplit(settings.CELERY_BROKER_URL)
    return ((url.hostname, url.port),) if url.hostname else ()


def submit(base: BaseModel, suite: str) -> Job:
    return Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a8-int8")], suite=suite, benchmark_profile="")


def compressed(job: Job, checkpoint) -> Variant:
    """What the compress stage leaves: a cataloged variant and a done stage."""
    recipe = job.recipes.get()
    variant = Variant.objects.create(
        base=job.base_model,
        recipe=recipe,
        job=job,
        name=f"{job.base_model.name}-{recipe.name}-{job.pk}",
        local_path=str(checkpoint),
    )
    job.stages.filter(kind="compress").update(status=S.DONE)
    job.dispatch()
    return variant


def test_it_validates_a_variant_against_a_shared_baseline_offline(
    transactional_db, stories260k, perturbed, suite_file, settings
):
    call_command("import_model", str(stories260k))
    base = BaseModel.objects.get(name="stories260k")
    job = submit(base, suite_file)
    with no_network(services(settings)) as attempts:
        assert run_queued(job, "fetch") == "done"
        assert run_queued(job, "baseline") == "done", job.stages.get(kind="baseline").error
        variant = compressed(job, perturbed)
        assert run_queued(job, "validate") == "done", job.stages.get(kind="validate").error
    assert attempts == []

    base_run = EvalRun.objects.get(base_model=base)
    assert base_run.model_revision == base.resolved_sha and base_run.suite == "tiny"
    assert set(base_run.metrics) == {"arc_easy", "hellaswag", "winogrande", "lambada_openai"}
    assert base_run.results["results"]["hellaswag"]["acc_norm,none"] == base_run.metrics["hellaswag"]["value"]
    assert len(_result_of(base_run).samples) == 22  # the per-sample log is there and matches its sha256
    assert job.stages.get(kind="baseline").outputs["eval_run"] == base_run.pk

    variant_run = EvalRun.objects.get(variant=variant)
    assert variant_run.settings_key == base_run.settings_key
    recoveries = {r.task: r for r in Recovery.objects.filter(variant_run=variant_run)}
    assert set(recoveries) == set(base_run.metrics)
    for task, r in recoveries.items():
        assert r.base_run == base_run and r.threshold == 0.99  # the w8a8-int8 preset's gate
        assert r.base_value == base_run.metrics[task]["value"] and r.variant_value == variant_run.metrics[task]["value"]
        assert r.ci_low <= r.diff <= r.ci_high
    variant.refresh_from_db()
    report = variant.gate_report
    for r in recoveries.values():  # judged by where the recovery's whole interval lies
        low, high = r.recovery_low >= r.threshold, r.recovery_high < r.threshold
        assert r.verdict == ("validated" if low else "failed" if high else "inconclusive")
    assert variant.gate == report["verdict"] != Variant.Gate.PENDING
    assert report["variant_run"] == variant_run.pk and report["base_run"] == base_run.pk
    assert {t: v["verdict"] for t, v in report["tasks"].items()} == {t: r.verdict for t, r in recoveries.items()}
    validate = job.stages.get(kind="validate")
    assert validate.outputs["eval_run"] == variant_run.pk and validate.outputs["gate"] == report["summary"]
    assert {"evals:engine", "evals:lm-eval"} <= set(Job.objects.get(pk=job.pk).versions)

    # a second job on the same base reuses the baseline instead of evaluating it again
    second = submit(base, suite_file)
    assert run_queued(second, "fetch") == "done"
    assert run_queued(second, "baseline") == "done"
    baseline = second.stages.get(kind="baseline")
    assert baseline.outputs["reused"] is True and baseline.outputs["eval_run"] == base_run.pk
    assert "reusing baseline run" in baseline.log
    assert EvalRun.objects.filter(base_model=base).count() == 1


def test_it_refuses_to_validate_without_a_baseline_of_the_same_settings(
    transactional_db, stories260k, perturbed, suite_file
):
    call_command("import_model", str(stories260k))
    job = submit(BaseModel.objects.get(name="stories260k"), suite_file)
    run_queued(job, "fetch")
    assert run_queued(job, "baseline") == "done"
    EvalRun.objects.update(settings_key="0" * 64)  # as if the engine had changed since
    compressed(job, perturbed)
    assert run_queued(job, "validate") == S.FAILED
    error = job.stages.get(kind="validate").error
    assert "no baseline of stories260k with settings" in error and "retry the baseline stage" in error
    assert not Recovery.objects.exists()


def test_it_fails_clearly_on_an_unknown_suite(transactional_db, stories260k, isolated_storage):
    call_command("import_model", str(stories260k))
    job = submit(BaseModel.objects.get(name="stories260k"), "nope")
    run_queued(job, "fetch")
    assert run_queued(job, "baseline") == S.FAILED
    stage = job.stages.get(kind="baseline")
    assert stage.error.startswith("suite nope: unknown suite 'nope'") and "Traceback" not in stage.error
    assert job.stages.get(kind="validate").status == S.SKIPPED


def test_it_says_how_to_run_offline_when_task_data_is_unreachable(
    transactional_db, stories260k, isolated_storage, settings
):
    settings.EVAL_DATA_DIR = None
    call_command("import_model", str(stories260k))
    job = submit(BaseModel.objects.get(name="stories260k"), "quick")
    run_queued(job, "fetch")
    assert run_queued(job, "baseline") == S.FAILED
    error = job.stages.get(kind="baseline").error
    assert "cannot load its documents from the Hugging Face hub" in error and "set HUB_EVAL_DATA_DIR" in error
