"""Browser tests: Debian's chromium, headless, driven by Playwright against a live server on the
test database. `playwright install` never runs (it downloads a browser of its own); without
/usr/bin/chromium (`make install` installs it as root) these tests skip."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.web.conftest import catalog  # noqa: F401 - fixtures shared with the page tests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


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
def page(browser, live_server, settings, request):
    settings.SITE_URL = live_server.url  # the hub's own address: the links and upload URLs it hands out
    context = browser.new_context(
        base_url=live_server.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
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
