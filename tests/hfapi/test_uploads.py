"""Uploads: LFS upload URLs authorize themselves for one object and expire; content is checked
against its announced sha256 and size before it is kept; a commit lands whole or not at all,
and only on the head it was made against."""

import base64
import hashlib
import html
import json
import re
import shutil
import time

import httpx2
import pytest
from django.contrib.auth.models import User
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from hub.api.models import ApiToken
from hub.hfapi import storage
from hub.hfapi.models import GITATTRIBUTES, Repo
from tests.helpers import paste


@pytest.fixture
def repo(hub_url, alice_token) -> str:
    HfApi(endpoint=hub_url, token=alice_token).create_repo("alice/up")
    return "alice/up"


def batch(hub_url: str, repo: str, token: str, data: bytes) -> dict:
    response = httpx2.post(
        f"{hub_url}/{repo}.git/info/lfs/objects/batch",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.git-lfs+json"},
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "hash_algo": "sha256",
            "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}],
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["objects"][0]


def commit_lines(hub_url: str, repo: str, token: str, *lines: dict) -> httpx2.Response:
    return httpx2.post(
        f"{hub_url}/api/models/{repo}/commit/main",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        content="".join(json.dumps(line) + "\n" for line in lines).encode(),
    )


def test_it_keeps_only_content_that_matches_the_announced_object(repo, hub_url, alice_token):
    data = b"\0weights" * 1000
    href = batch(hub_url, repo, alice_token, data)["actions"]["upload"]["href"]
    other = b"\0WEIGHTS" * 1000  # same size, other bytes
    refused = httpx2.put(href, content=other)
    assert refused.status_code == 400 and "not the announced" in refused.json()["error"]
    assert not storage.has_object(hashlib.sha256(other).hexdigest(), len(other))
    assert not storage.has_object(hashlib.sha256(data).hexdigest(), len(data))
    assert httpx2.put(href, content=data[:-1]).status_code == 400  # too short
    stored = {p.parent.name + p.name for p in storage.object_path("0" * 64).parents[1].glob("*/*")}
    assert stored == {hashlib.sha256(GITATTRIBUTES.encode()).hexdigest()}  # the repository's first commit only
    assert not list((storage.object_path("0" * 64).parents[2] / "incoming").iterdir())

    assert httpx2.put(href, content=data).status_code == 200  # no Authorization header: the URL is the grant
    assert storage.has_object(hashlib.sha256(data).hexdigest(), len(data))
    assert "actions" not in batch(hub_url, repo, alice_token, data)  # already uploaded: nothing to do


def test_it_refuses_tampered_and_expired_upload_urls(repo, hub_url, alice_token, settings):
    data = b"\0" * 64
    href = batch(hub_url, repo, alice_token, data)["actions"]["upload"]["href"]
    claim = href.rsplit("/", 1)[1]
    payload, rest = claim.split(":", 1)
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["size"] = 65
    forged_claim = base64.urlsafe_b64encode(json.dumps(forged, separators=(",", ":")).encode()).decode().rstrip("=")
    tampered = httpx2.put(href.replace(claim, f"{forged_claim}:{rest}"), content=data + b"!")
    assert tampered.status_code == 403 and tampered.json()["error"] == "invalid upload URL"

    settings.HFAPI_UPLOAD_URL_TTL = 1
    time.sleep(2.1)
    expired = httpx2.put(href, content=data)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]


def test_it_refuses_a_commit_naming_an_object_not_uploaded_to_this_repo(repo, hub_url, alice_token, bob_token):
    data = b"\0alice's weights"
    href = batch(hub_url, repo, alice_token, data)["actions"]["upload"]["href"]
    assert httpx2.put(href, content=data).status_code == 200
    HfApi(endpoint=hub_url, token=bob_token).create_repo("bob/copycat")
    # bob knows the sha256, but never uploaded the bytes to his repository
    response = commit_lines(
        hub_url,
        "bob/copycat",
        bob_token,
        {"key": "header", "value": {"summary": "steal"}},
        {
            "key": "lfsFile",
            "value": {
                "path": "w.safetensors",
                "algo": "sha256",
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            },
        },
    )
    assert response.status_code == 400 and "was not uploaded" in response.json()["error"]


def test_it_lands_a_commit_whole_or_not_at_all(repo, hub_url, alice_token):
    head = Repo.objects.get(namespace="alice", name="up").head
    response = commit_lines(
        hub_url,
        repo,
        alice_token,
        {"key": "header", "value": {"summary": "half"}},
        {
            "key": "file",
            "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(b"hi").decode()},
        },
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "1" * 64, "size": 5}},
    )
    assert response.status_code == 400
    repo_row = Repo.objects.get(namespace="alice", name="up")
    assert repo_row.head == head and repo_row.commits.count() == 1
    assert list(head.entries.values_list("path", flat=True)) == [".gitattributes"]


def test_it_refuses_a_commit_on_a_moved_head(repo, hub_url, alice_token):
    api = HfApi(endpoint=hub_url, token=alice_token)
    first = api.model_info(repo).sha
    api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=repo)
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            repo, [CommitOperationAdd("b.txt", b"b")], commit_message="on a stale head", parent_commit=first
        )
    assert stale.value.response.status_code == 412
    assert api.list_repo_files(repo) == [".gitattributes", "a.txt"]


def test_it_deletes_files_and_folders_in_new_commits_and_keeps_old_ones(repo, hub_url, alice_token, tmp_path):
    api = HfApi(endpoint=hub_url, token=alice_token)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    before = api.upload_folder(folder_path=folder, repo_id=repo).oid
    api.delete_folder("sub", repo_id=repo)
    api.delete_file("b.txt", repo_id=repo)
    assert api.list_repo_files(repo) == [".gitattributes"]
    assert sorted(api.list_repo_files(repo, revision=before)) == [".gitattributes", "b.txt", "sub/a.txt"]
    tree = {item.path: type(item).__name__ for item in api.list_repo_tree(repo, revision=before)}
    assert tree == {".gitattributes": "RepoFile", "b.txt": "RepoFile", "sub": "RepoFolder"}


def test_it_gives_the_default_admin_upload_commands_that_work(hub_url, client, stories260k, tmp_path):
    """`make run` makes a superuser named admin, a namespace the hub reserves for its pages: the
    token page's commands, pasted into a shell as they are, still upload and download."""
    client.force_login(User.objects.create_superuser("admin", password="admin-password-1"))
    page = client.post("/tokens/", {"name": "laptop", "scope": "write"}).content.decode()
    commands = html.unescape(re.search(r'<pre class="snippets">(.*?)</pre>', page, re.S).group(1))
    shutil.copytree(stories260k, tmp_path / "my-model-folder")
    out = paste(commands, tmp_path)  # the commands must set HF_HUB_DISABLE_XET themselves
    assert out.returncode == 0, f"{commands}\n{out.stderr[-3000:]}"
    repo = Repo.objects.get(namespace="admin-models", name="my-model")
    stored = {e.path: e.sha256 for e in repo.head.entries.all()}
    assert stored["model.safetensors"] == hashlib.sha256((stories260k / "model.safetensors").read_bytes()).hexdigest()


def test_it_says_where_staff_may_create_a_repository_the_hub_reserves(hub_url):
    admin = User.objects.create_superuser("admin", password="admin-password-1")
    token = ApiToken.issue(admin, "t", ApiToken.Scope.WRITE)[1]
    with pytest.raises(
        HfHubHTTPError,
        match="'admin' is reserved for the hub's own pages; as staff you may use any "
        "other namespace, such as admin-models/x",
    ):
        HfApi(endpoint=hub_url, token=token).create_repo("admin/x")
