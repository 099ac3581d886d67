"""What a script learns of single paths and copies files with: get_paths_info (with last
commits), CommitOperationCopy and copy_files within a repository, HfFileSystem's info and cp_file, and list_repo_tree(expand=True)."""

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, HfApi, HfFileSystem
from huggingface_hub.hf_api import RepoFile, RepoFolder

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def repo(hub_url, alice_token, stories260k) -> HfApi:
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/stories")
    api.upload_folder(folder_path=stories260k, repo_id="alice/stories", commit_message="weights")
    api.create_commit(
        "alice/stories",
        [CommitOperationAdd("docs/a.md", b"a"), CommitOperationAdd("docs/deep/b.md", b"b")],
        commit_message="docs",
    )
    return api


def test_it_describes_files_and_folders_with_their_last_commit(repo, stories260k):
    api = repo
    weights, docs = [c for c in api.list_repo_commits("alice/stories") if c.title in ("weights", "docs")][::-1]
    found = api.get_paths_info(
        "alice/stories", ["model.safetensors", "docs", "missing.txt", "docs/deep/b.md"], expand=True
    )
    by_path = {item.path: item for item in found}
    assert sorted(by_path) == ["docs", "docs/deep/b.md", "model.safetensors"]  # a missing path is left out
    assert isinstance(by_path["docs"], RepoFolder) and isinstance(by_path["model.safetensors"], RepoFile)
    assert by_path["model.safetensors"].lfs.size == (stories260k / "model.safetensors").stat().st_size
    assert by_path["model.safetensors"].last_commit.oid == weights.commit_id
    assert by_path["docs"].last_commit.oid == docs.commit_id and by_path["docs"].last_commit.title == "docs"
    assert api.get_paths_info("alice/stories", "docs/a.md")[0].last_commit is None  # only when asked

    tree = {item.path: item for item in api.list_repo_tree("alice/stories", expand=True)}
    assert tree["config.json"].last_commit.oid == weights.commit_id and tree["docs"].last_commit.oid == docs.commit_id


def test_it_copies_files_within_a_repository(repo, hub_url, alice_token, stories260k):
    api = repo
    api.create_commit(
        "alice/stories",
        [
            CommitOperationCopy("model.safetensors", "backup/model.safetensors"),
            CommitOperationCopy("config.json", "backup/config.json"),
        ],
        commit_message="copies",
    )
    fs = HfFileSystem(endpoint=hub_url, token=alice_token)
    fs.cp_file("alice/stories/docs/a.md", "alice/stories/docs/c.md")
    assert fs.cat_file("alice/stories/docs/c.md") == b"a"
    copy = fs.info("alice/stories/backup/model.safetensors", expand_info=True)
    assert copy["lfs"]["sha256"] == fs.info("alice/stories/model.safetensors")["lfs"]["sha256"]
    assert copy["last_commit"].title == "copies"
    assert fs.cat_file("alice/stories/backup/config.json") == (stories260k / "config.json").read_bytes()
    api.copy_files("hf://alice/stories/backup/", "hf://alice/stories/again/")
    assert sorted(p for p in api.list_repo_files("alice/stories") if p.startswith("again/")) == [
        "again/config.json",
        "again/model.safetensors",
    ]
