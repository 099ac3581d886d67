"""What a client is told when a repository, revision or file does not exist, or when it asks for
a part of the Hub API this hub does not serve: JSON with the Hub's X-Error-Code headers, so
huggingface_hub raises its specific error classes and shows the hub's sentence."""

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from tests.helpers import paste

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def repo(hub_url, alice_token) -> str:
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/tiny")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="alice/tiny")
    return "alice/tiny"


def test_it_raises_entry_not_found_for_a_missing_file(repo, hub_url, tmp_path):
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "missing.safetensors", endpoint=hub_url, cache_dir=tmp_path)
    head = httpx2.head(f"{hub_url}/{repo}/resolve/main/missing.safetensors")
    assert head.status_code == 404 and head.headers["X-Error-Code"] == "EntryNotFound"
    assert head.headers["X-Repo-Commit"] == HfApi(endpoint=hub_url).model_info(repo).sha


def test_it_raises_revision_not_found_for_a_missing_revision(repo, hub_url, tmp_path):
    for revision in ("0" * 40, "no-such-branch"):
        with pytest.raises(RevisionNotFoundError):
            hf_hub_download(repo, "config.json", revision=revision, endpoint=hub_url, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        HfApi(endpoint=hub_url).model_info(repo, revision="no-such-branch")


def test_it_raises_repository_not_found_for_a_missing_repo(repo, hub_url, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/nothing-here", "config.json", endpoint=hub_url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub_url).model_info("nobody/nothing")


def test_it_answers_unsatisfiable_ranges_with_416(repo, hub_url):
    response = httpx2.get(f"{hub_url}/{repo}/resolve/main/config.json", headers={"Range": "bytes=10-"})
    assert response.status_code == 416 and response.headers["Content-Range"] == "bytes */2"


def test_it_answers_json_for_api_paths_it_does_not_serve(repo, hub_url, alice_token, tmp_path):
    api = HfApi(endpoint=hub_url, token=alice_token)
    calls = {
        "discussions and pull requests are": lambda: list(api.get_repo_discussions(repo)),
        "duplicating a repository is": lambda: api.duplicate_repo(repo, "alice/copy"),
        "squashing history is": lambda: api.super_squash_history(repo),
        "likes are": lambda: api.unlike(repo),
        "listing and purging LFS files is": lambda: list(api.list_lfs_files(repo)),
        "Spaces are": lambda: list(api.list_spaces()),
        "collections are": lambda: list(api.list_collections()),
        "webhooks are": lambda: api.list_webhooks(),
    }
    for sentence, call in calls.items():
        with pytest.raises(HfHubHTTPError, match=f"{sentence} not supported by this hub") as refused:
            call()
        response = refused.value.response
        assert response.status_code == 404 and response.headers["X-Error-Code"] == "NotSupported", sentence
        assert response.headers["Content-Type"] == "application/json", sentence

    for method, path in [("GET", "/api/no/such/thing"), ("POST", "/api/models/alice/tiny/discussions/1/comment")]:
        response = httpx2.request(method, f"{hub_url}{path}", headers={"Authorization": f"Bearer {alice_token}"})
        assert response.status_code == 404 and response.headers["X-Error-Code"] == "NotSupported", path
        assert (
            response.json()["error"].endswith("not supported by this hub")
            or "does not serve" in response.json()["error"]
        )
    assert repo in [r.id for r in api.list_models()]  # nothing was changed on the way
    xet = httpx2.get(
        f"{hub_url}/api/models/{repo}/xet-write-token/main", headers={"Authorization": f"Bearer {alice_token}"}
    )
    assert "set HF_HUB_DISABLE_XET=1" in xet.json()["error"]  # what the client's Xet upload asks first

    shell = paste(f"HF_ENDPOINT={hub_url} HF_TOKEN={alice_token} hf discussions list {repo}", tmp_path)
    assert shell.returncode != 0 and "discussions and pull requests are not supported by this hub" in shell.stderr
