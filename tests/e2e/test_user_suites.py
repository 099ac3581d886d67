"""A suite of one's own, from the browser: upload it on the Suites page (a multiple-choice task whose
questions are in a dataset repository of the hub), run a job with it on a real worker, offline,
and read the task's recovery with its interval on the variant's page."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Stage
from hub.suites.models import Suite
from tests.e2e.conftest import sign_in
from tests.suite_files import make_dataset, suite_files

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_it_uploads_a_suite_and_validates_a_variant_on_it(
    page, live_server, alice, start_worker, stories260k, fixtures_dir, tmp_path
):
    make_dataset(fixtures_dir, tmp_path / "arc-mini", "alice/arc-mini", "alice")
    uploads = tmp_path / "upload"
    uploads.mkdir()
    for name, data in suite_files(limit=12).items():
        (uploads / name).write_bytes(data)
    call_command("import_model", str(stories260k))
    base = BaseModel.objects.get(name="stories260k")
    start_worker(
        "e2e@localhost",
        HUB_SITE_URL=live_server.url,  # the dataset downloads, and publish uploads, through the hub's own API
        HUB_CALIBRATION_DATASET=str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt"),
        HUB_CALIBRATION_SAMPLES="4",
        HUB_CALIBRATION_SEQ_LEN="64",
    )
    sign_in(page, live_server, alice)

    page.goto("/")
    page.get_by_role("link", name="Suites").click()
    page.get_by_role("link", name="Upload a suite").click()
    page.locator("#id_suite").set_input_files(uploads / "suite.yaml")
    page.locator("#id_files").set_input_files([uploads / "arc_mini.yaml"])
    page.shots("upload")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="Suite alice/arc-mini@1")).to_be_visible()
    expect(page.locator("#suite-tasks tbody tr")).to_contain_text(["arc_mini.yaml"])
    page.shots("suite")
    suite = Suite.objects.get()

    page.goto("/jobs/new/")
    page.locator("#id_base").select_option(str(base.pk))
    page.locator('input[name="presets"][value="w8a8-int8"]').check()
    page.locator("#id_suite").select_option("alice/arc-mini@1")
    page.locator("#id_benchmark_profile").select_option("")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("submitted.")).to_be_visible()
    job = Job.objects.get()
    assert job.user_suite == suite

    expect(page.locator("#job-status")).to_have_text("done", timeout=600_000)
    page.shots("done")
    assert set(job.stages.values_list("status", flat=True)) == {Stage.Status.DONE}
    page.locator("a", has_text="stories260k-w8a8-int8").first.click()
    # the task's recovery and its 95% interval
    expect(page.locator("table.recovery tbody tr", has_text="arc_mini")).to_contain_text(
        re.compile(r"\d%\s*\[\d+\.\d+%, \d+\.\d+%\]")
    )
    page.shots("variant")
    baseline = job.stages.get(kind=Stage.Kind.BASELINE).outputs
    assert baseline["settings_key"] and set(baseline["metrics"]) == {"arc_mini"}
