"""File and repository names that show something other than what they are: control characters
(an ANSI escape rewrites a terminal listing), bidi overrides (U+202E shows `evil\u202etxt.exe` as
`evilexe.txt`), zero-width and other invisible characters (two names that look the same), line
separators, and a lone surrogate, which no UTF-8 database can store. Every route that takes a
path refuses them with a clear 400, and stores nothing."""

import base64
import json
from urllib.parse import quote

import httpx2
import pytest
from huggingface_hub import HfApi

from hub.hfapi.models import Entry, Repo

NAMES = {
    "escape": "logs/\x1b[2Jclean.txt",
    "delete": "a\x7fb.txt",
    "c1-control": "a\x85b.txt",
    "bidi": "evil\u202etxt.exe",
    "bidi-isolate": "a\u2066b.txt",
    "zero-width": "con\u200bfig.json",
    "byte-order-mark": "\ufeffconfig.json",
    "line-separator": "a\u2028b.txt",
    "lone-surrogate": "a\ud800b.txt",
}


def clear_refusal(answer: httpx2.Response) -> str:
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    message = answer.json()["error"]
    assert "invalid file path" in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("kind", NAMES)
def test_it_refuses_names_that_hide_what_they_are(hf_hub, alice, alice_token, kind):
    name = NAMES[kind]
    HfApi(endpoint=hf_hub.url, token=alice_token).create_repo("alice/names")
    client = httpx2.Client(base_url=hf_hub.url, timeout=60, headers={"Authorization": f"Bearer {alice_token}"})
    head = Repo.objects.get(name="names").head_id

    # json.dumps writes a lone surrogate as the \ud800 escape, as any JSON client may send it
    preupload = client.post(
        "/api/models/alice/names/preupload/main",
        content=json.dumps({"files": [{"path": name, "size": 1, "sample": ""}]}),
    )
    assert "U+" in clear_refusal(preupload)

    for line in (
        {"key": "file", "value": {"path": name, "encoding": "base64", "content": base64.b64encode(b"x").decode()}},
        {"key": "deletedFile", "value": {"path": name}},
    ):
        body = "\n".join(json.dumps(item) for item in ({"key": "header", "value": {"summary": "add"}}, line))
        clear_refusal(client.post("/api/models/alice/names/commit/main", content=body))
    assert Repo.objects.get(name="names").head_id == head
    assert not Entry.objects.exclude(path=".gitattributes").exists()

    if kind != "lone-surrogate":  # a URL carries UTF-8, which cannot spell a lone surrogate
        url_name = quote(name)
        clear_refusal(client.get(f"/alice/names/resolve/main/{url_name}"))
        clear_refusal(client.get(f"/api/models/alice/names/tree/main/{url_name}"))


@pytest.mark.parametrize("name", ["tiny\n", "tiny\u202e", "t\u200biny"])
def test_it_refuses_such_repository_names(hf_hub, alice, alice_token, name):
    answer = httpx2.post(
        f"{hf_hub.url}/api/repos/create",
        headers={"Authorization": f"Bearer {alice_token}"},
        json={"name": name, "type": "model"},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    assert "invalid model name" in answer.json()["error"]
    assert not Repo.objects.exists()
