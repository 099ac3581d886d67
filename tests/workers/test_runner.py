"""What the runner gives a stage's body: its progress in the stage's row and log."""

from hub.jobs.models import Job, Stage
from workers.runner import StageContext


def test_it_logs_a_long_stages_progress_a_line_at_most_every_half_minute(transactional_db, llama):
    """A body reports progress every few seconds for many minutes: the log gets a line when what
    it says changed, never two within PROGRESS_LOG_INTERVAL (30 s), not one per report."""
    job = Job.objects.create(base_model=llama, suite="quick")
    stage = job.add_stage(Stage.Kind.BASELINE)
    Stage.objects.filter(pk=stage.pk).update(status=Stage.Status.QUEUED)
    assert stage.claim("gpu@test")
    now = 0.0
    ctx = StageContext(stage, clock=lambda: now)
    ctx.start()
    for second in range(0, 1000, 5):  # a report every 5 s for 1000 s, say lm-eval's loglikelihood requests
        now = second
        ctx.progress(second / 1000, f"loglikelihood: {second}/1000 requests")
    for now in (2000.0, 3000.0):  # what it says no longer changes: no more lines, however long it takes
        ctx.progress(1.0, "loglikelihood: 1000/1000 requests")
    ctx.stop()
    stage.refresh_from_db()
    lines = [line.split("] ", 1)[1] for line in stage.log.splitlines() if "requests" in line]
    assert len(lines) == 34  # at 30 s, 60 s, ..., 990 s, and when it reached 1000/1000
    assert lines[:2] == ["3% loglikelihood: 30/1000 requests", "6% loglikelihood: 60/1000 requests"]
    assert lines[-1] == "100% loglikelihood: 1000/1000 requests"
    assert stage.message == "loglikelihood: 1000/1000 requests" and stage.progress == 1.0
