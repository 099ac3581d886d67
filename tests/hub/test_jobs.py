from datetime import timedelta

import pytest
from django.utils import timezone

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe, Stage

S = Stage.Status


@pytest.fixture
def base(db):
    return BaseModel.objects.create(name="org/tiny", status=BaseModel.Status.READY)


def submit(base, *presets, **kwargs) -> Job:
    return Job.submit(base_model=base, recipes=[Recipe.for_preset(p) for p in presets or ("w8a8-int8",)], **kwargs)


def stage(job: Job, kind: str, recipe: str | None = None) -> Stage:
    qs = job.stages.filter(kind=kind)
    return (qs.filter(recipe__name=recipe) if recipe else qs).get()


def run(st: Stage) -> Stage:
    """Move a stage through queued -> running the way a worker would."""
    Stage.objects.filter(pk=st.pk).update(status=S.QUEUED)
    st.refresh_from_db()
    assert st.claim("w@test")
    return st


def test_it_creates_the_stage_graph(base):
    job = submit(base, "w8a8-int8", "w4a16")
    kinds = sorted((s.kind, s.recipe.name if s.recipe else "") for s in job.stages.all())
    assert len(kinds) == 2 + 2 * 4
    validate = stage(job, "validate", "w4a16")
    assert {(d.kind, d.recipe_id) for d in validate.depends_on.all()} == {
        ("compress", validate.recipe_id),
        ("baseline", None),
    }
    publish = stage(job, "publish", "w4a16")
    assert {d.kind for d in publish.depends_on.all()} == {"compress", "validate", "benchmark"}
    assert stage(job, "fetch").queue == "cpu" and stage(job, "compress", "w4a16").queue == "gpu"


def test_it_leaves_out_validation_and_benchmarks_when_not_asked(base):
    job = submit(base, suite="", benchmark_profile="")
    assert sorted(job.stages.values_list("kind", flat=True)) == ["compress", "fetch", "publish"]


@pytest.mark.parametrize("presets", [("w8a8-int8",), ("w8a8-int8", "w4a16", "fp8-dynamic")])
@pytest.mark.parametrize("suite", ["quick", ""])
@pytest.mark.parametrize("profile", ["chat", ""])
def test_it_counts_the_stages_a_submission_will_make_as_submit_makes_them(base, presets, suite, profile):
    """The per-job stage limit is checked before anything is created, from this count."""
    job = submit(base, *presets, suite=suite, benchmark_profile=profile)
    assert job.stages.count() == Job.planned_stages(len(presets), suite, profile)


def test_it_enqueues_only_once_the_transaction_commits(base, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        job = submit(base)
    assert set(job.stages.values_list("status", flat=True)) == {S.PENDING}
    assert len(callbacks) == 1
    callbacks[0]()
    assert stage(job, "fetch").status == S.QUEUED
    assert stage(job, "baseline").status == S.PENDING


def test_it_creates_nothing_when_submission_fails(base):
    with pytest.raises(ValueError, match="at least one recipe"):
        Job.submit(base_model=base, recipes=[])
    with pytest.raises(ValueError, match="unknown recipe preset 'w3a3'"):
        submit(base, "w3a3")
    assert not Job.objects.exists() and not Stage.objects.exists()


def test_it_lets_only_one_worker_claim_a_stage(base):
    fetch = stage(submit(base), "fetch")
    Stage.objects.filter(pk=fetch.pk).update(status=S.QUEUED)
    first, second = Stage.objects.get(pk=fetch.pk), Stage.objects.get(pk=fetch.pk)
    assert first.claim("a@host")
    assert not second.claim("b@host")
    first.refresh_from_db()
    assert (first.status, first.attempt, first.worker) == (S.RUNNING, 1, "a@host")
    assert first.job.status == Job.Status.RUNNING


def test_it_ignores_the_outcome_of_an_attempt_that_lost_its_claim(base):
    fetch = run(stage(submit(base), "fetch"))
    stale = Stage.objects.get(pk=fetch.pk)
    Stage.objects.filter(pk=fetch.pk).update(status=S.QUEUED)
    assert Stage.objects.get(pk=fetch.pk).claim("b@host")  # attempt 2
    assert not stale.finish({"x": 1})
    assert not stale.beat(0.5, "still here?")
    assert Stage.objects.get(pk=fetch.pk).status == S.RUNNING


def test_it_hands_on_to_the_next_stages_when_one_finishes(base):
    job = submit(base, "w8a8-int8")
    fetch = run(stage(job, "fetch"))
    assert fetch.finish({"ok": True})
    job.dispatch()
    assert stage(job, "baseline").status == S.QUEUED
    assert stage(job, "compress").status == S.QUEUED
    assert stage(job, "validate").status == S.PENDING


def test_it_stops_the_dependents_of_a_failed_stage_only(base):
    job = submit(base, "w8a8-int8", "w4a16")
    run(stage(job, "fetch")).finish({})
    job.dispatch()
    assert run(stage(job, "compress", "w4a16")).fail("RuntimeError: boom")
    for kind in ("validate", "benchmark", "publish"):
        st = stage(job, kind, "w4a16")
        assert st.status == S.SKIPPED and "compress (w4a16) failed" in st.message
        assert stage(job, kind, "w8a8-int8").status == S.PENDING
    job.refresh_status()
    assert job.status == Job.Status.RUNNING  # the other recipe still has work to do


def test_it_retries_a_failed_stage_without_redoing_the_ones_before(base):
    job = submit(base)
    run(stage(job, "fetch")).finish({"kept": True})
    job.dispatch()
    run(stage(job, "compress")).fail("RuntimeError: out of memory")
    for kind in ("baseline",):
        run(stage(job, kind)).finish({})
    job.refresh_status()
    assert job.status == Job.Status.FAILED and "out of memory" in job.error

    stage(job, "compress").retry()
    job.refresh_from_db()
    assert stage(job, "fetch").status == S.DONE and stage(job, "fetch").outputs == {"kept": True}
    assert stage(job, "compress").status == S.QUEUED
    assert {stage(job, k).status for k in ("validate", "benchmark", "publish")} == {S.PENDING}
    assert job.status == Job.Status.RUNNING and job.error == ""
    with pytest.raises(ValueError, match="only a failed, cancelled or skipped stage"):
        stage(job, "fetch").retry()


def test_it_cancels_waiting_stages_at_once_and_refuses_new_claims(base):
    job = submit(base)
    fetch = stage(job, "fetch")
    Stage.objects.filter(pk=fetch.pk).update(status=S.QUEUED)
    job.cancel()
    assert set(job.stages.values_list("status", flat=True)) == {S.CANCELLED}
    assert not Stage.objects.get(pk=fetch.pk).claim("w@host")
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED


def test_it_requeues_a_stage_whose_worker_stopped_beating(base, settings):
    settings.STAGE_HEARTBEAT_TIMEOUT = 30
    job = submit(base)
    fetch = run(stage(job, "fetch"))
    Stage.objects.filter(pk=fetch.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    report = Stage.reconcile()
    fetch.refresh_from_db()
    assert report["requeued"] == 1
    assert fetch.status == S.QUEUED and fetch.attempt == 1
    assert "lost during attempt 1" in fetch.message and "re-queued" in fetch.log


def test_it_leaves_a_stage_with_a_fresh_heartbeat_alone(base, settings):
    settings.STAGE_HEARTBEAT_TIMEOUT = 30
    fetch = run(stage(submit(base), "fetch"))
    assert Stage.reconcile()["requeued"] == 0
    assert Stage.objects.get(pk=fetch.pk).status == S.RUNNING


def test_it_requeues_at_once_what_a_restarted_worker_was_running(base):
    fetch = run(stage(submit(base), "fetch"))
    Stage.reconcile(worker_restarted="other@host")
    assert Stage.objects.get(pk=fetch.pk).status == S.RUNNING
    Stage.reconcile(worker_restarted="w@test")
    assert Stage.objects.get(pk=fetch.pk).status == S.QUEUED


def test_it_fails_a_stage_lost_too_many_times(base, settings):
    settings.STAGE_MAX_ATTEMPTS = 2
    job = submit(base)
    fetch = stage(job, "fetch")
    for _ in range(2):
        fetch = run(Stage.objects.get(pk=fetch.pk))
        Stage.reconcile(worker_restarted="w@test")
    fetch.refresh_from_db()
    assert fetch.status == S.FAILED and "giving up after 2 attempts" in fetch.error
    assert stage(job, "baseline").status == S.SKIPPED
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED


def test_it_resends_a_queued_stage_no_worker_claimed(base, settings):
    settings.STAGE_REQUEUE_AFTER = 60
    fetch = stage(submit(base), "fetch")
    old = timezone.now() - timedelta(seconds=61)
    Stage.objects.filter(pk=fetch.pk).update(status=S.QUEUED, enqueued_at=old)
    assert Stage.reconcile()["resent"] == 1
    assert Stage.objects.get(pk=fetch.pk).enqueued_at > old
