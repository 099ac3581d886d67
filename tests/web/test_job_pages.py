"""Job pages: live stages with logs and ETA, cancel, retry from a stage, my jobs and the queue."""

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe, Stage
from tests.helpers import run_queued

S = Stage.Status


def submitted(base, owner, private=False) -> Job:
    return Job.submit(
        base_model=base,
        recipes=[Recipe.for_preset("w4a16")],
        owner=owner,
        suite="",
        benchmark_profile="",
        private=private,
    )


def test_it_guesses_a_waiting_stages_time_only_from_models_of_its_size(client, catalog, alice):
    """A stage that ran 79 s on a 1.2B model says nothing about one on a 7B model."""
    now = timezone.now()
    catalog.llama.num_parameters, catalog.qwen.num_parameters = 1_200_000_000, 7_000_000_000
    catalog.llama.save()
    catalog.qwen.save()
    done = submitted(catalog.llama, alice)
    done.stages.filter(kind="publish").update(status=S.DONE, started_at=now - timedelta(seconds=79), finished_at=now)
    alike = BaseModel.objects.create(
        name="org/llama-1b-copy", num_parameters=1_000_000_000, status=BaseModel.Status.READY
    )
    assert "typically 1 min 19 s" in client.get(f"/jobs/{submitted(alike, alice).pk}/").content.decode()
    assert "typically" not in client.get(f"/jobs/{submitted(catalog.qwen, alice).pk}/").content.decode()


def test_it_shows_stages_with_progress_logs_and_eta(client, catalog, alice):
    job = submitted(catalog.llama, alice)
    now = timezone.now()
    job.stages.filter(kind="fetch").update(
        status=S.DONE, started_at=now - timedelta(seconds=95), finished_at=now, log="fetched\n"
    )
    job.stages.filter(kind="compress").update(
        status=S.RUNNING,
        progress=0.25,
        message="layer 4/16",
        started_at=now - timedelta(seconds=60),
        log="quantizing layer 4\n",
    )
    job.refresh_status()
    html = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'data-kind="compress" data-status="running"' in html and "layer 4/16" in html
    assert "about 3 min" in html  # 60 s for a quarter: three more minutes
    assert "quantizing layer 4" in html and "log of fetch" in html
    assert "1 min 35 s" in html  # how long fetch took
    assert 'hx-trigger="every 2s"' in html  # live while the job runs


def test_it_answers_the_poll_with_the_stages_fragment_and_stops_polling_when_done(client, catalog, alice):
    job = submitted(catalog.llama, alice)
    html = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<section id="job-live"') and "every 2s" in html
    job.cancel()
    assert "every 2s" not in client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()


def test_it_lets_the_owner_cancel(client, catalog, alice, bob):
    job = submitted(catalog.llama, alice)
    client.force_login(bob)
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED
    client.force_login(alice)
    assert "Cancel job" in client.get(f"/jobs/{job.pk}/").content.decode()
    client.post(f"/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert set(job.stages.values_list("status", flat=True)) == {S.CANCELLED}


def test_it_retries_from_a_failed_stage(client, catalog, alice):
    job = submitted(catalog.llama, alice)
    job.stages.filter(kind="fetch").update(status=S.DONE)
    compress = job.stages.get(kind="compress")
    Stage.objects.filter(pk=compress.pk).update(status=S.FAILED, error="boom")
    job.stages.filter(kind="publish").update(status=S.SKIPPED)
    job.refresh_status()
    client.force_login(alice)
    assert "retry from here" in client.get(f"/jobs/{job.pk}/").content.decode()
    client.post(f"/jobs/{job.pk}/stages/{compress.pk}/retry/")
    statuses = dict(job.stages.values_list("kind", "status"))
    assert statuses == {"fetch": S.DONE, "compress": S.QUEUED, "publish": S.PENDING}


def test_it_refuses_to_retry_a_done_stage(client, catalog, alice):
    job = submitted(catalog.llama, alice)
    fetch = job.stages.get(kind="fetch")
    Stage.objects.filter(pk=fetch.pk).update(status=S.DONE)
    client.force_login(alice)
    response = client.post(f"/jobs/{job.pk}/stages/{fetch.pk}/retry/", follow=True)
    assert "only a failed, cancelled or skipped stage can be retried" in response.content.decode()


def test_it_lists_my_jobs_and_the_queue(client, catalog, alice, bob):
    mine = submitted(catalog.llama, alice)
    hidden = submitted(catalog.private, alice, private=True)
    for job in (mine, hidden):
        job.dispatch()  # what commit would do (tests run inside one transaction)
    client.force_login(alice)
    html = client.get("/jobs/").content.decode()
    assert f"/jobs/{mine.pk}/" in html and f"/jobs/{hidden.pk}/" in html
    assert "cpu 2" in html  # both fetch stages wait on the cpu queue
    assert f"job {mine.pk}</a></td>\n      <td>org/llama-1b</td><td>w4a16</td>" in html  # what each job compresses with
    client.force_login(bob)
    html = client.get("/jobs/").content.decode()
    assert f"/jobs/{mine.pk}/" in html and f"/jobs/{hidden.pk}/" not in html
    assert client.get(f"/jobs/{hidden.pk}/").status_code == 404


NARROW_W4A16 = """
quant_stage:
  quant_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16}
"""


def test_it_offers_edit_and_resubmit_not_retry_for_a_failure_every_run_meets(
    client, transactional_db, alice, alice_token, stories260k, isolated_storage
):
    """A pasted recipe keeps its groups of 128, which stories260k's widths cannot take: compress
    fails the same way on every run, so retrying is not offered; the form comes back filled in."""
    call_command("import_model", str(stories260k))
    base = BaseModel.objects.get(name="stories260k")
    recipe = Recipe.objects.create(name="narrow", version=1, yaml=NARROW_W4A16, owner=alice)
    job = Job.submit(base_model=base, recipes=[recipe], owner=alice, suite="", benchmark_profile="")
    job.dispatch()  # what the submission's commit does
    assert run_queued(job, "fetch") == "done"
    assert run_queued(job, "compress") == "failed"
    compress, publish = job.stages.get(kind="compress"), job.stages.get(kind="publish")
    assert "does not divide the input width" in compress.error
    assert not compress.retry_helps and not publish.retry_helps and publish.status == S.SKIPPED

    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "retry from here" not in page and f'href="/jobs/new/?from={job.pk}"' in page
    form = client.get(f"/jobs/new/?from={job.pk}").content.decode()
    assert "QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16}" in form
    assert f'<option value="{base.pk}" selected>' in form and 'value="narrow"' in form
    answer = client.post(
        f"/api/v1/jobs/{job.pk}/retry", {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {alice_token}"
    )
    assert answer.status_code == 409 and "edit the job and submit it anew" in answer.json()["error"]["message"]
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["stages"][1]["retry_helps"] is False


def test_it_says_where_a_queued_stage_stands_in_its_queue(client, catalog, alice):
    now = timezone.now()
    first, second = submitted(catalog.llama, alice), submitted(catalog.qwen, alice)
    first.stages.filter(kind="fetch").update(status=S.RUNNING, started_at=now)
    first.stages.filter(kind="compress").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=30))
    second.stages.filter(kind="fetch").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=20))
    second.stages.filter(kind="compress").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=10))
    first_page = client.get(f"/jobs/{first.pk}/").content.decode()
    assert "next in the gpu queue" in first_page
    page = client.get(f"/jobs/{second.pk}/").content.decode()
    assert "1 stage ahead of it in the cpu queue" in page  # first's running fetch
    assert "1 stage ahead of it in the gpu queue" in page  # first's compress, queued before


def test_it_lists_each_job_once_with_the_stage_it_runs(client, catalog, alice, bob, staff):
    """Mine under "My jobs", others' in the queue, finished ones of others for staff: the running
    stage is shown on the job's row, not as a row of its own."""
    now = timezone.now()
    running = submitted(catalog.llama, alice)
    running.stages.filter(kind="fetch").update(
        status=S.RUNNING, worker="cpu@w1", progress=0.4, message="downloading model.safetensors", started_at=now
    )
    running.refresh_status()
    finished = submitted(catalog.llama, staff)
    finished.cancel()
    link = f'href="/jobs/{running.pk}/"'
    for user in (alice, bob, staff):
        client.force_login(user)
        html = client.get("/jobs/").content.decode()
        assert html.count(link) == 1, user
        assert "fetch on cpu@w1" in html and "downloading model.safetensors" in html
    assert html.count(f'href="/jobs/{finished.pk}/"') == 1  # staff's own: under My jobs, not among the finished


def test_it_estimates_when_a_queued_stage_starts(client, catalog, alice):
    """The time left of each stage ahead in its queue: a running one's by its progress, a queued
    one's typical time on its model's size; unknown once one of them has no history."""
    now = timezone.now()
    history = submitted(catalog.llama, alice)
    history.stages.filter(kind="compress").update(
        status=S.DONE, started_at=now - timedelta(minutes=10), finished_at=now
    )
    first, second = submitted(catalog.llama, alice), submitted(catalog.llama, alice)
    first.stages.filter(kind="fetch").update(status=S.RUNNING, progress=0.5, started_at=now - timedelta(seconds=60))
    first.stages.filter(kind="compress").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=30))
    second.stages.filter(kind="fetch").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=20))
    second.stages.filter(kind="compress").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=10))
    page = client.get(f"/jobs/{second.pk}/").content.decode()
    assert "1 stage ahead of it in the cpu queue; starts in about 1 min 00 s" in page  # half done in a minute
    assert "1 stage ahead of it in the gpu queue; starts in about 10 min 00 s" in page  # a typical compress
    unknown = submitted(catalog.qwen, alice)  # no stage ever ran on a model of its size
    unknown.stages.filter(kind="compress").update(status=S.QUEUED, enqueued_at=now - timedelta(seconds=40))
    page = client.get(f"/jobs/{second.pk}/").content.decode()
    assert "2 stages ahead of it in the gpu queue; start unknown" in page
