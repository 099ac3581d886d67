"""Branches and tags with the stock clients: a variant kept on a branch, a release pinned by a
tag, and every revision a script may name (branch, tag, full or short commit id) resolved by
every download path: hf_hub_download, snapshot_download, the `hf` CLI and transformers."""

import json

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from tests.helpers import load_from_hub, paste

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def stories(hub_url, alice_token, stories260k) -> HfApi:
    """alice/stories: a README on main, the checkpoint on the branch w4a16."""
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/stories")
    api.upload_file(path_or_fileobj=b"# stories\n", path_in_repo="README.md", repo_id="alice/stories")
    api.create_branch("alice/stories", branch="w4a16")
    api.upload_folder(folder_path=stories260k, repo_id="alice/stories", revision="w4a16", commit_message="weights")
    return api


def read(hub_url, path: str, revision: str, tmp_path) -> str:
    return open(hf_hub_download("alice/stories", path, revision=revision, endpoint=hub_url, cache_dir=tmp_path)).read()


def test_it_keeps_a_variant_on_a_branch_and_a_release_on_a_tag(stories, hub_url, stories260k, tmp_path):
    api = stories
    main, branch = api.model_info("alice/stories").sha, api.model_info("alice/stories", revision="w4a16").sha
    assert "config.json" not in api.list_repo_files("alice/stories")  # main did not move
    assert "config.json" in api.list_repo_files("alice/stories", revision="w4a16")

    api.create_tag("alice/stories", tag="v1", revision="w4a16", tag_message="first release")
    config = (stories260k / "config.json").read_text()
    for revision in ("w4a16", "v1", branch, branch[:7], "refs/heads/w4a16"):
        assert read(hub_url, "config.json", revision, tmp_path) == config, revision
    with pytest.raises(RevisionNotFoundError):
        read(hub_url, "README.md", "v2", tmp_path)
    folder = snapshot_download("alice/stories", revision="v1", endpoint=hub_url, cache_dir=tmp_path / "snap")
    assert json.loads(open(f"{folder}/config.json").read()) == json.loads(config)

    refs = api.list_repo_refs("alice/stories")
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [
        ("main", "refs/heads/main", main),
        ("w4a16", "refs/heads/w4a16", branch),
    ]
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1", "refs/tags/v1", branch)]
    on_branch = [c.title for c in api.list_repo_commits("alice/stories", revision="w4a16")]
    assert on_branch == ["weights", "Upload README.md with huggingface_hub", "initial commit"]
    assert [c.title for c in api.list_repo_commits("alice/stories")] == on_branch[1:]

    # a tag stays where it was put while its branch moves on
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id="alice/stories", revision="w4a16")
    assert api.model_info("alice/stories", revision="v1").sha == branch
    assert api.model_info("alice/stories", revision="w4a16").sha != branch

    shell = paste(
        f"HF_ENDPOINT={hub_url} hf download alice/stories config.json --revision v1 --local-dir out", tmp_path
    )
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert (tmp_path / "out" / "config.json").read_text() == config

    assert api.resolve_revision("alice/stories", revision="v1").resolved == branch
    assert api.revision_exists("alice/stories", "v1") and not api.revision_exists("alice/stories", "v2")
    assert api.file_exists("alice/stories", "config.json", revision="v1")
    assert not api.file_exists("alice/stories", "config.json")


@pytest.mark.slow
def test_it_loads_a_branch_in_transformers(stories, hub_url, stories260k, tmp_path):
    assert load_from_hub(hub_url, "alice/stories", stories260k, tmp_path, "remote.config.model_type", "w4a16") == [
        "loaded",
        "llama",
    ]


def test_it_deletes_branches_and_tags_but_never_main(stories, hub_url, tmp_path):
    api = stories
    api.create_tag("alice/stories", tag="v1")
    api.create_branch("alice/stories", branch="w4a16", exist_ok=True)
    with pytest.raises(HfHubHTTPError, match="already has a branch named w4a16"):
        api.create_branch("alice/stories", branch="w4a16")
    with pytest.raises(HfHubHTTPError, match="already has a tag named v1"):
        api.create_branch("alice/stories", branch="v1")
    api.delete_branch("alice/stories", branch="w4a16")
    api.delete_tag("alice/stories", tag="v1")
    for revision in ("w4a16", "v1"):
        with pytest.raises(RevisionNotFoundError):
            read(hub_url, "README.md", revision, tmp_path)
    with pytest.raises(HfHubHTTPError, match="main cannot be deleted"):
        api.delete_branch("alice/stories", branch="main")
    assert [b.name for b in api.list_repo_refs("alice/stories").branches] == ["main"]


def test_it_refuses_refs_and_commits_that_cannot_be(stories, hub_url, bob_token):
    api = stories
    for name in ("main", "abcdef1", "-dash", "a" * 101):
        with pytest.raises(HfHubHTTPError, match="invalid branch name"):
            api.create_branch("alice/stories", branch=name)
    with pytest.raises(RevisionNotFoundError):
        api.create_branch("alice/stories", branch="new", revision="no-such-start")
    api.create_tag("alice/stories", tag="v1")
    for revision in ("v1", "no-such-branch"):  # commits go on branches, never on a tag
        with pytest.raises(RevisionNotFoundError):
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/stories", revision=revision)

    bob = HfApi(endpoint=hub_url, token=bob_token)
    with pytest.raises(HfHubHTTPError, match="bob may not change the branches of alice/stories"):
        bob.create_branch("alice/stories", branch="mine")
    with pytest.raises(HfHubHTTPError, match="bob may not tag alice/stories"):
        bob.delete_tag("alice/stories", tag="v1")
    api.update_repo_settings("alice/stories", private=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.list_repo_refs("alice/stories")


def test_it_answers_a_revision_no_ref_can_be_named_as_missing(stories, hub_url):
    token = {"Authorization": f"Bearer {stories.token}"}
    for revision in ("a%00b", "%E2%80%AEv1", "v1%0A", "refs%2Fheads%2F%00"):
        for method, path in [
            ("GET", f"api/models/alice/stories/revision/{revision}"),
            ("GET", f"api/models/alice/stories/tree/{revision}"),
            ("GET", f"alice/stories/resolve/{revision}/README.md"),
            ("POST", f"api/models/alice/stories/commit/{revision}"),
        ]:
            answer = httpx2.request(method, f"{hub_url}/{path}", headers=token, content=b"")
            assert (answer.status_code, answer.headers.get("X-Error-Code")) == (404, "RevisionNotFound"), path
