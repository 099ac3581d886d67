"""Browser tests: Debian's chromium, headless, driven by Playwright against a live server on the
test database. `playwright install` never runs (it downloads a browser of its own); without
/usr/bin/chromium (`make install` installs it as root) these tests skip."""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.web.conftest import alice, catalog  # noqa: F401 - fixtures shared with the page tests
from tests.workers.conftest import start_worker  # noqa: F401 - a real worker process

# Playwright's sync API runs an event loop in the test's thread; Django then refuses ORM calls
# from it unless told the thread is not really asynchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `make install` installs Debian's package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _storage(isolated_storage):
    return isolated_storage


class Shots:
    """Screenshots kept as test artifacts: test-artifacts/e2e/<test>-<n>-<what>.png."""

    def __init__(self, page, test_name: str) -> None:
        self.page, self.prefix, self.n = page, re.sub(r"\W+", "-", test_name), 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, what: str) -> Path:
        self.n += 1
        path = ARTIFACTS / f"{self.prefix}-{self.n:02d}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser, live_server, request):
    context = browser.new_context(base_url=live_server.url, accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.shots = Shots(page, request.node.name)
    yield page
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        page.shots("at-the-end")
    context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def sign_in(page, live_server, user) -> None:
    """Sign a browser in without the login form (the sign-in test uses the form itself)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
