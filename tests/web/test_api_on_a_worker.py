"""A job driven through the REST API alone, with a token, on a real worker process."""

import hashlib

import pytest
from django.core.management import call_command
from django.test import Client

from hub.api.models import ApiToken
from tests.helpers import slow_checkpoint, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture
def api(alice) -> Client:
    token = ApiToken.issue(alice, "api test", ApiToken.Scope.WRITE)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def job_status(api: Client, job_id: int) -> dict:
    return api.get(f"/api/v1/jobs/{job_id}").json()


def stage(job: dict, kind: str) -> dict:
    return next(s for s in job["stages"] if s["kind"] == kind)


def test_it_drives_a_job_to_done_through_the_api(api, start_worker, stories260k, fixtures_dir, live_server, settings):  # noqa: F811
    settings.SITE_URL = live_server.url  # the hub's own address: the upload URLs it hands the worker
    call_command("import_model", str(stories260k))
    base = api.get("/api/v1/models?q=stories260k").json()["items"][0]
    start_worker(  # w8a8-int8 is per-channel (stories260k is too narrow for w4a16's groups of 128)
        "api@localhost",
        HUB_SITE_URL=live_server.url,  # publish uploads through the hub's own HTTP API
        HUB_CALIBRATION_DATASET=str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt"),
        HUB_CALIBRATION_SAMPLES="4",
        HUB_CALIBRATION_SEQ_LEN="64",
    )
    submitted = api.post(
        "/api/v1/jobs",
        {"base": base["id"], "presets": ["w8a8-int8"], "suite": "", "benchmark_profile": ""},
        content_type="application/json",
    )
    assert submitted.status_code == 201, submitted.json()
    job = wait_for(
        lambda: (j := job_status(api, submitted.json()["id"]))["status"] in ("done", "failed", "cancelled") and j,
        300,
        "the job to end",
    )
    assert job["status"] == "done", job["error"]
    variant = api.get(f"/api/v1/variants/{job['variants'][0]}").json()
    entry = next(f for f in variant["files"] if f["path"].endswith(".safetensors"))
    body = b"".join(api.get(f"{variant['url']}files/{entry['path']}").streaming_content)
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]


def test_it_cancels_and_retries_through_the_api(api, start_worker, tmp_path):  # noqa: F811
    base = slow_checkpoint(tmp_path)
    start_worker("api@localhost")
    job_id = api.post(
        "/api/v1/jobs",
        {"base": base.pk, "presets": ["w4a16"], "suite": "", "benchmark_profile": ""},
        content_type="application/json",
    ).json()["id"]
    wait_for(lambda: stage(job_status(api, job_id), "fetch")["status"] == "running", 60, "fetch to run")

    cancelled = api.post(f"/api/v1/jobs/{job_id}/cancel").json()
    assert cancelled["cancel_requested"]
    job = wait_for(lambda: (j := job_status(api, job_id))["status"] == "cancelled" and j, 60, "the worker to stop")
    assert stage(job, "fetch")["status"] == "cancelled"

    retried = api.post(f"/api/v1/jobs/{job_id}/retry", {}, content_type="application/json").json()
    assert not retried["cancel_requested"]
    job = wait_for(
        lambda: (j := job_status(api, job_id))["status"] in ("done", "failed") and j, 120, "the retried job to end"
    )
    fetch = stage(job, "fetch")
    assert (fetch["status"], fetch["attempt"]) == ("done", 2)
    # the fake checkpoint has no real weights: compress refuses it, and says so
    assert stage(job, "compress")["status"] == "failed" and job["status"] == "failed"
