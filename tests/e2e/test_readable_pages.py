"""The pages a newcomer reads after the catalog, in a real browser: the base page names every
benchmark row's model, says what a profile sends, names metrics readably with a glossary and
offers commands that scroll rather than wrap; the compare page has real axes; the jobs list
shows a job once; the API docs lead back to the hub. Each screen is kept as a screenshot."""

from playwright.sync_api import expect

from hub.catalog.models import BaseModel
from hub.jobs.models import Stage
from tests.e2e.conftest import sign_in
from tests.helpers import submit_job


def test_it_shows_a_base_model_readably(page, catalog):
    page.goto(f"/models/{catalog.llama.pk}/")
    rows = page.locator("table.bench tbody tr")
    expect(rows.first).to_contain_text("org/llama-1b")  # the model column is filled
    expect(rows.first).to_contain_text("chat v1 (512 tokens in, 256 out)")
    expect(page.locator("span.metric").first).to_have_text("accuracy")
    expect(page.locator(".glossary")).to_contain_text("share of questions")
    snippet = page.locator("figure.snippet pre").first
    assert snippet.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    assert snippet.evaluate("e => getComputedStyle(e).overflowX") == "auto"
    page.shots("base-page")


def test_it_draws_the_compare_chart_with_real_axes(page, catalog):
    page.goto(f"/models/{catalog.llama.pk}/compare/")
    chart = page.locator("svg").first
    assert chart.locator("g.ticks.x text").count() >= 4 and chart.locator("g.ticks.y text").count() >= 4
    assert "e+" not in chart.inner_html()
    page.shots("compare")


def test_it_lists_a_running_job_once_and_says_when_a_queued_stage_starts(page, live_server, alice, catalog):
    base = BaseModel.objects.get(name="org/llama-1b")
    running, waiting = submit_job(base, owner=alice), submit_job(base, "w4a16", owner=alice)
    Stage.objects.filter(job=running, kind="fetch").update(status=Stage.Status.RUNNING, progress=0.5, message="hashing")
    sign_in(page, live_server, alice)
    page.goto("/jobs/")
    for job in (running, waiting):
        expect(page.locator(f'a[href="/jobs/{job.pk}/"]')).to_have_count(1)
    page.shots("jobs-list")
    page.goto(f"/jobs/{waiting.pk}/")
    expect(page.locator('tr.stage[data-kind="fetch"]')).to_contain_text("1 stage ahead of it in the cpu queue")
    page.shots("job-page")


def test_it_leads_from_the_api_docs_back_to_the_hub(page):
    page.goto("/api/v1/docs")
    back = page.get_by_role("link", name="Back to the hub")
    expect(back).to_be_visible()
    page.shots("api-docs")
    assert back.get_attribute("href") == "/"
