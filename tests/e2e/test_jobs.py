"""Submit jobs through the form and follow them live on a real worker: one is cancelled while it
runs, one runs every stage to done (once every stage exists)."""

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Stage
from tests.e2e.conftest import sign_in
from tests.helpers import write_tiny_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.services]

# The shortest job that still runs a benchmark: no evaluation suite (the quick suite alone takes
# about 3.5 minutes per model on stories260k on 2 CPU cores, and a job runs it twice), the
# single-stream profile.
SHORTEST = {"suite": "", "profile": "single-stream"}


def submit(page, base: BaseModel, preset: str, suite: str = "", profile: str = "") -> Job:
    page.goto("/jobs/new/")
    page.locator("#id_base").select_option(str(base.pk))
    page.locator(f'input[name="presets"][value="{preset}"]').check()
    page.locator("#id_suite").select_option(suite)
    page.locator("#id_benchmark_profile").select_option(profile)
    page.shots("form")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("submitted.")).to_be_visible()
    return Job.objects.get(pk=int(page.url.rstrip("/").split("/")[-1]))


def test_it_cancels_a_running_job(page, live_server, alice, start_worker, tmp_path):
    # a checkpoint whose import takes seconds (a 2 GiB sparse tensor to hash), so it can be caught running
    source = write_tiny_checkpoint(tmp_path / "big", extra_tensor_elems=512 * 1024 * 1024)
    base = BaseModel.objects.create(name="org/big", source_path=str(source), architecture="LlamaForCausalLM")
    start_worker("e2e@localhost")
    sign_in(page, live_server, alice)
    job = submit(page, base, "w4a16")

    fetch = page.locator('tr.stage[data-kind="fetch"]')
    expect(fetch).to_have_attribute("data-status", "running", timeout=60_000)  # the page follows the worker
    page.shots("running")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=60_000)
    page.shots("cancelled")
    assert dict(job.stages.values_list("kind", "status")) == {
        "fetch": Stage.Status.CANCELLED,
        "compress": Stage.Status.CANCELLED,
        "publish": Stage.Status.CANCELLED,
    }
    assert not BaseModel.objects.get(pk=base.pk).local_path  # nothing half-imported was recorded


def test_it_follows_a_job_to_done(page, live_server, alice, start_worker, stories260k, fixtures_dir):
    call_command("import_model", str(stories260k))
    base = BaseModel.objects.get(name="stories260k")
    start_worker(  # w8a8-int8 (per-channel, so any width) calibrates on a few local samples
        "e2e@localhost",
        HUB_SITE_URL=live_server.url,  # publish uploads through the hub's own HTTP API
        HUB_CALIBRATION_DATASET=str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt"),
        HUB_CALIBRATION_SAMPLES="4",
        HUB_CALIBRATION_SEQ_LEN="64",
    )
    sign_in(page, live_server, alice)
    job = submit(page, base, "w8a8-int8", **SHORTEST)

    # the page follows the worker: stages turn done one after the other, without a reload
    expect(page.locator('tr.stage[data-kind="compress"]')).to_have_attribute("data-status", "done", timeout=120_000)
    page.shots("compressed")
    expect(page.locator("#job-status")).to_have_text("done", timeout=300_000)
    page.shots("done")
    assert set(job.stages.values_list("status", flat=True)) == {Stage.Status.DONE}
    page.locator("a", has_text="stories260k-w8a8-int8").first.click()
    expect(page.get_by_role("heading", name="Speed")).to_be_visible()
    expect(page.locator("table.bench tbody tr")).not_to_have_count(0)
    page.shots("variant")
