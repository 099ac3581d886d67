"""Stages run in real `celery worker` processes, through the configured broker (Redis in CI,
the embedded file broker otherwise), on the real test database."""

import signal

import pytest
from django.core.management import call_command

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe, Stage
from tests.helpers import run_queued, slow_checkpoint, wait_for, write_tiny_checkpoint
from workers import stages
from workers.runner import StageResult

pytestmark = [pytest.mark.services, pytest.mark.slow]
S = Stage.Status


def stage(job: Job, kind: str) -> Stage:
    return job.stages.get(kind=kind)


def test_it_runs_a_jobs_stages_in_a_worker_process(start_worker, stories260k):
    call_command("import_model", str(stories260k))
    job = Job.submit(base_model=BaseModel.objects.get(name="stories260k"), recipes=[Recipe.for_preset("w8a8-int8")])
    worker = start_worker("w1@localhost")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Job.Status.FAILED, 60, "the job to end")

    fetch = stage(job, "fetch")
    assert (fetch.status, fetch.attempt, fetch.worker, fetch.progress) == (S.DONE, 1, "w1@localhost", 1.0)
    assert fetch.outputs["resolved_sha"] == job.base_model.resolved_sha
    assert "fetch started on w1@localhost" in fetch.log
    baseline = stage(job, "baseline")
    assert baseline.status == S.FAILED
    # offline, with no local task data, the evaluation cannot start: it says why, and stops its dependents
    assert "arc_easy: cannot load its documents from the Hugging Face hub" in baseline.error
    assert stage(job, "validate").status == S.SKIPPED
    assert "succeeded" in worker.output()


def test_it_recovers_a_stage_whose_worker_was_killed(start_worker, tmp_path, settings):
    base = slow_checkpoint(tmp_path)
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w4a16")], suite="", benchmark_profile="")
    first = start_worker("gpu0@localhost")
    wait_for(
        lambda: Stage.objects.filter(job=job, kind="fetch", status=S.RUNNING, progress__gt=0).exists(),
        60,
        "fetch to be running",
    )
    first.kill(signal.SIGKILL)
    assert stage(job, "fetch").status == S.RUNNING  # the row outlives the process

    start_worker("gpu0@localhost")  # the same worker comes back
    wait_for(lambda: stage(job, "fetch").status in Stage.FINAL, 120, "fetch to end")
    fetch = stage(job, "fetch")
    assert fetch.status == S.DONE, fetch.error
    assert fetch.attempt == 2
    assert "lost during attempt 1" in fetch.log
    base.refresh_from_db()
    assert base.status == BaseModel.Status.READY
    stored = [p for p in (settings.MODELS_DIR / "local" / "org" / "big").iterdir() if not p.name.startswith(".")]
    assert [p.name for p in stored] == [base.resolved_sha]
    assert (stored[0] / "model.safetensors").stat().st_size == (tmp_path / "big" / "model.safetensors").stat().st_size


def test_it_cancels_a_running_stage(start_worker, tmp_path):
    base = slow_checkpoint(tmp_path)
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w4a16")], suite="", benchmark_profile="")
    start_worker("w2@localhost")
    wait_for(
        lambda: Stage.objects.filter(job=job, kind="fetch", status=S.RUNNING, progress__gt=0).exists(),
        60,
        "fetch to be running",
    )
    job.cancel()
    wait_for(lambda: stage(job, "fetch").status in Stage.FINAL, 30, "fetch to stop")
    assert stage(job, "fetch").status == S.CANCELLED
    # the cancel lands mid-import, or (on a fast disk) as the import finishes: the log says which, without a traceback
    log = stage(job, "fetch").log
    assert "cancelled while" in log or "cancelled by request before its result" in log, log
    assert "Traceback" not in log
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED
    assert BaseModel.objects.get(pk=base.pk).status == BaseModel.Status.PENDING


def test_it_cancels_a_stage_whose_cancel_lands_while_it_finishes(transactional_db, tmp_path, monkeypatch):
    base = BaseModel.objects.create(name="org/tiny", source_path=str(write_tiny_checkpoint(tmp_path / "tiny")))
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a8-int8")], suite="", benchmark_profile="")
    recorded = []

    def body(stage, ctx):  # the user cancels after the work is done, before its result is stored
        Job.objects.get(pk=stage.job_id).cancel()
        return StageResult(outputs={"resolved_sha": "x"}, record=lambda: recorded.append(stage.kind))

    monkeypatch.setitem(stages.BODIES, "fetch", body)
    assert run_queued(job, "fetch") == S.CANCELLED
    assert recorded == []
    assert stage(job, "fetch").status == S.CANCELLED and "before its result was recorded" in stage(job, "fetch").error
    assert "fetch cancelled by request before its result was recorded" in stage(job, "fetch").log
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED
