"""A request cut off before its declared Content-Length: the client (or the network) goes away
after whole lines of a commit, or part of an LFS object. Nothing of it may land: the head stays
where it was and no object of the cut upload is kept."""

import base64
import hashlib
import json
import socket
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import HfApi

from hub.hfapi import storage


def send_cut(url: str, method: str, path: str, headers: dict[str, str], body: bytes, declared: int) -> bytes:
    """Send `body` under a Content-Length of `declared`, then close the sending side, as a client
    that went away does; returns whatever the server answered."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {parts.hostname}",
            f"Content-Length: {declared}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_it_lands_nothing_of_a_commit_cut_between_lines(hf_hub, alice, alice_token):
    api = HfApi(endpoint=hf_hub.url, token=alice_token)
    api.create_repo("alice/cut")
    api.upload_file(path_or_fileobj=b"keep me", path_in_repo="weights.txt", repo_id="alice/cut")
    head = api.model_info("alice/cut").sha
    lines = [
        {"key": "header", "value": {"summary": "replace the weights"}},
        {
            "key": "file",
            "value": {"path": "new.txt", "encoding": "base64", "content": base64.b64encode(b"new").decode()},
        },
    ]
    sent = "".join(json.dumps(line) + "\n" for line in lines).encode()
    # the line that never arrived would have deleted weights.txt in the same commit
    rest = (json.dumps({"key": "deletedFile", "value": {"path": "weights.txt"}}) + "\n").encode()

    answer = send_cut(
        hf_hub.url,
        "POST",
        "/api/models/alice/cut/commit/main",
        {"Authorization": f"Bearer {alice_token}", "Content-Type": "application/x-ndjson"},
        sent,
        len(sent) + len(rest),
    )

    assert b" 400 " in answer.split(b"\r\n", 1)[0], answer[:300]
    assert b"Content-Length" in answer and b"nothing was committed" in answer
    assert api.model_info("alice/cut").sha == head
    assert sorted(api.list_repo_files("alice/cut")) == [".gitattributes", "weights.txt"]


def test_it_keeps_no_object_of_an_upload_cut_short(hf_hub, alice, alice_token, settings):
    api = HfApi(endpoint=hf_hub.url, token=alice_token)
    api.create_repo("alice/cut")
    data = b"\0weights" * 4096
    oid = hashlib.sha256(data).hexdigest()
    answer = httpx2.post(
        f"{hf_hub.url}/alice/cut.git/info/lfs/objects/batch",
        timeout=60,
        headers={"Authorization": f"Bearer {alice_token}"},
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]},
    ).json()
    href = urlsplit(answer["objects"][0]["actions"]["upload"]["href"])

    cut = send_cut(hf_hub.url, "PUT", href.path, {}, data[: len(data) // 2], len(data))

    assert b" 400 " in cut.split(b"\r\n", 1)[0], cut[:300]
    assert not storage.has_object(oid, len(data))
    assert not list((settings.REPOS_DIR / "incoming").glob("*"))
