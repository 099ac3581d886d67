"""/health answers for the database, the broker and the workers; /metrics speaks Prometheus (to staff)."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.jobs.models import Job, Recipe, Stage
from tests.helpers import wait_for


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_it_says_unhealthy_when_no_worker_answers(client, db, settings):
    settings.HEALTH_PING_TIMEOUT = 0.3
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "failing"
    assert body["database"] == {"ok": True} and body["broker"] == {"ok": True}
    assert body["workers"] == {"ok": False, "error": "no worker answered", "answered": 0}


@pytest.mark.slow
@pytest.mark.services
def test_it_is_healthy_with_a_worker_answering(client, start_worker):  # noqa: F811
    start_worker("health@localhost")
    response = wait_for(
        lambda: (r := client.get("/health")).status_code == 200 and r, 60, "a worker to answer the ping"
    )
    assert response.json()["workers"]["answered"] == 1


def test_it_counts_requests_jobs_stages_and_queue_depth(admin_client, catalog, alice):
    job = Job.submit(
        base_model=catalog.llama, recipes=[Recipe.for_preset("w4a16")], owner=alice, suite="", benchmark_profile=""
    )
    job.dispatch()
    admin_client.get("/")
    response = admin_client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    m = samples(response.content.decode())
    assert m[("hub_http_requests_total", (("method", "GET"), ("status", "200"), ("view", "catalog")))] >= 1
    assert m[("hub_http_request_duration_seconds_count", (("view", "catalog"),))] >= 1
    assert m[("hub_jobs", (("status", "queued"),))] == 2  # the catalog's job and this one
    assert m[("hub_stages", (("kind", "fetch"), ("status", "queued")))] == 1
    assert m[("hub_queue_depth", (("queue", "cpu"),))] == 1
    assert m[("hub_queue_depth", (("queue", "gpu"),))] == 0


def test_it_sums_the_durations_of_finished_stages(admin_client, catalog):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    catalog.job.stages.update(status=Stage.Status.DONE, started_at=now - timedelta(seconds=90), finished_at=now)
    m = samples(admin_client.get("/metrics").content.decode())
    assert m[("hub_stage_duration_seconds_total", (("kind", "benchmark"),))] == pytest.approx(90)
    assert m[("hub_stage_finished_total", (("kind", "benchmark"),))] == 1
