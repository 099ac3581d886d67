"""The Host header is the client's to write. Where the hub admits several host names (an operator
set HUB_ALLOWED_HOSTS=*), a request naming `evil.example` must not get URLs on that host back:
an LFS upload href would send the weights there, a commitUrl or a `Link: rel=next` page would send
the client's token, and a page's snippets would have users download from there. Every absolute
URL the hub hands out is on its own address, SITE_URL."""

import base64
import hashlib
import json

import httpx2
import pytest

from hub.catalog.models import BaseModel

EVIL = "evil.example"


@pytest.fixture
def lax_hub(start_gunicorn):
    return start_gunicorn(HUB_ALLOWED_HOSTS="*")


def test_it_builds_absolute_urls_on_its_own_address(lax_hub, alice, alice_token):
    hub = lax_hub
    client = httpx2.Client(
        base_url=hub.url, timeout=60, headers={"Host": EVIL, "Authorization": f"Bearer {alice_token}"}
    )

    created = client.post("/api/repos/create", json={"name": "tiny", "type": "model"})
    assert created.status_code == 200, created.text
    assert created.json()["url"] == f"{hub.url}/alice/tiny"
    again = client.post("/api/repos/create", json={"name": "tiny", "type": "model"})
    assert again.status_code == 409 and again.json()["url"] == f"{hub.url}/alice/tiny"
    client.post("/api/repos/create", json={"name": "other", "type": "model"})

    data = b"\0weights"
    batch = client.post(
        "/alice/tiny.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}]},
    )
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    assert href.startswith(f"{hub.url}/api/lfs/"), href

    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {
            "key": "file",
            "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(b"# tiny").decode()},
        },
    ]
    committed = client.post("/api/models/alice/tiny/commit/main", content="\n".join(map(json.dumps, lines)))
    assert committed.json()["commitUrl"].startswith(f"{hub.url}/alice/tiny/commit/"), committed.text

    listed = client.get("/api/models", params={"limit": 1})
    assert listed.headers["Link"].startswith(f"<{hub.url}/api/models?"), listed.headers["Link"]

    BaseModel.objects.create(
        name="alice/tiny", hf_repo_id="alice/tiny", on_this_hub=True, status=BaseModel.Status.READY
    )
    base = BaseModel.objects.get()
    for page in ("/alice/tiny", "/repos/", f"/models/{base.pk}/"):
        text = client.get(page).text
        assert EVIL not in text and hub.url in text, page
