"""What a client is told when a repository, revision or file does not exist: the Hub's
X-Error-Code headers, so huggingface_hub raises its specific error classes."""

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError


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
