"""Browsing and managing the hub's repositories with the stock client: list_models,
list_repo_refs, list_repo_commits, update_repo_settings and delete_repo, each seeing only what
the caller may read and changing only what the caller owns."""

import httpx2
import pytest
from django.test import Client
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hub.catalog.models import Publication, Variant
from hub.hfapi import storage
from hub.hfapi.models import Repo

CARD = "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- quantized\n- w4a16\n---\n# a model\n"


@pytest.fixture
def repos(hub_url, alice_token, bob_token) -> tuple[HfApi, HfApi]:
    alice, bob = HfApi(endpoint=hub_url, token=alice_token), HfApi(endpoint=hub_url, token=bob_token)
    alice.create_repo("alice/small-w4a16")
    alice.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id="alice/small-w4a16")
    alice.create_repo("alice/secret", private=True)
    bob.create_repo("bob/other")
    return alice, bob


def ids(models) -> list[str]:
    return [m.id for m in models]


def test_it_lists_the_models_each_caller_may_read(repos, hub_url):
    alice, bob = repos
    anonymous = HfApi(endpoint=hub_url, token=False)
    assert ids(anonymous.list_models()) == ["bob/other", "alice/small-w4a16"]  # newest change first
    assert ids(bob.list_models(author="alice")) == ["alice/small-w4a16"]
    assert ids(alice.list_models(author="alice", sort="id")) == ["alice/secret", "alice/small-w4a16"]
    assert ids(alice.list_models(search="secr")) == ["alice/secret"]

    tagged = list(anonymous.list_models(filter="w4a16", cardData=True))
    assert ids(tagged) == ["alice/small-w4a16"]
    assert tagged[0].tags == ["quantized", "w4a16"] and tagged[0].card_data.license == "apache-2.0"
    assert tagged[0].sha == alice.model_info("alice/small-w4a16").sha and tagged[0].siblings is None
    full = next(iter(anonymous.list_models(search="small", full=True)))
    assert sorted(s.rfilename for s in full.siblings) == [".gitattributes", "README.md"]
    assert ids(anonymous.list_models(filter=["w4a16", "no-such-tag"])) == []


def test_it_pages_the_list_and_refuses_unknown_sorts(repos, hub_url):
    first = httpx2.get(f"{hub_url}/api/models", params={"limit": 1})
    assert [m["id"] for m in first.json()] == ["bob/other"]
    following = httpx2.get(first.links["next"]["url"])
    assert [m["id"] for m in following.json()] == ["alice/small-w4a16"] and "next" not in following.links
    refused = httpx2.get(f"{hub_url}/api/models", params={"sort": "downloads"})
    assert refused.status_code == 400 and "not 'downloads'" in refused.json()["error"]


def test_it_lists_refs_and_commits(repos):
    alice, _ = repos
    second = alice.upload_file(
        path_or_fileobj=b"more",
        path_in_repo="notes.txt",
        repo_id="alice/small-w4a16",
        commit_message="add notes",
        commit_description="why: to test history",
    )
    refs = alice.list_repo_refs("alice/small-w4a16")
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [("main", "refs/heads/main", second.oid)]
    assert refs.tags == [] and refs.converts == []

    history = alice.list_repo_commits("alice/small-w4a16")
    assert [c.title for c in history] == ["add notes", "Upload README.md with huggingface_hub", "initial commit"]
    assert history[0].commit_id == second.oid and history[0].message == "why: to test history"
    assert history[0].authors == ["alice"] and history[0].created_at >= history[1].created_at
    earlier = alice.list_repo_commits("alice/small-w4a16", revision=history[1].commit_id)
    assert [c.commit_id for c in earlier] == [c.commit_id for c in history[1:]]
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=alice.endpoint, token=False).list_repo_commits("alice/secret")


def test_it_lets_the_owner_change_visibility(repos, hub_url):
    alice, bob = repos
    anonymous = HfApi(endpoint=hub_url, token=False)
    alice.update_repo_settings("alice/small-w4a16", private=True)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("alice/small-w4a16")
    assert ids(anonymous.list_models()) == ["bob/other"]
    assert alice.model_info("alice/small-w4a16").private
    with pytest.raises(RepositoryNotFoundError):
        bob.update_repo_settings("alice/small-w4a16", private=False)
    alice.update_repo_settings("alice/small-w4a16", private=False)
    assert not anonymous.model_info("alice/small-w4a16").private
    with pytest.raises(HfHubHTTPError, match="may not change the settings") as refused:
        bob.update_repo_settings("alice/small-w4a16", private=True)
    assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError, match="gated repositories are not supported"):
        alice.update_repo_settings("alice/small-w4a16", gated="auto")
    assert not anonymous.model_info("alice/small-w4a16").private


def test_it_deletes_a_repository_and_the_files_only_it_held(repos, hub_url):
    alice, bob = repos
    shared, own = b"\0shared weights" * 100, b"\0alice's own weights" * 100
    bob.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id="bob/other")
    alice.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id="alice/small-w4a16")
    alice.upload_file(path_or_fileobj=own, path_in_repo="own.bin", repo_id="alice/small-w4a16")
    own_sha = next(e.sha256 for e in Repo.objects.get(name="small-w4a16").head.entries.all() if e.path == "own.bin")

    with pytest.raises(HfHubHTTPError, match="may not delete") as refused:
        bob.delete_repo("alice/small-w4a16")
    assert refused.value.response.status_code == 403
    with pytest.raises(RepositoryNotFoundError):
        bob.delete_repo("alice/secret")  # private: bob cannot tell it exists

    alice.delete_repo("alice/small-w4a16")
    assert not alice.repo_exists("alice/small-w4a16")
    assert not storage.object_path(own_sha).exists()
    with open(bob.hf_hub_download("bob/other", "shared.bin"), "rb") as f:
        assert f.read() == shared
    with pytest.raises(RepositoryNotFoundError):
        alice.delete_repo("alice/small-w4a16")
    alice.delete_repo("alice/small-w4a16", missing_ok=True)
    nameless = httpx2.request(
        "DELETE",
        f"{hub_url}/api/repos/delete",
        json={"organization": "alice"},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert nameless.status_code == 400 and "'name'" in nameless.json()["error"]
    alice.create_repo("alice/small-w4a16")  # the name is free again
    assert [c.title for c in alice.list_repo_commits("alice/small-w4a16")] == ["initial commit"]


def test_it_keeps_a_repository_a_variant_was_published_to_as_it_is(recorded_variant_job, hub_url, alice_token):
    alice = HfApi(endpoint=hub_url, token=alice_token)
    alice.create_repo("alice/published")
    variant = Variant.objects.get(job=recorded_variant_job)
    Publication.objects.create(
        variant=variant,
        endpoint=Publication.LOCAL,
        repo_id="alice/published",
        commit_sha=alice.model_info("alice/published").sha,
    )
    with pytest.raises(HfHubHTTPError, match="holds the published variant stories260k-w8a8-int8") as refused:
        alice.delete_repo("alice/published")
    assert refused.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError, match="its visibility follows the variant's"):
        alice.update_repo_settings("alice/published", private=True)
    assert alice.repo_exists("alice/published") and not alice.model_info("alice/published").private


def test_it_lists_the_repositories_a_visitor_may_read_on_a_page(repos, alice):
    anonymous = Client().get("/repos/").content.decode()
    assert "alice/small-w4a16" in anonymous and "bob/other" in anonymous and "alice/secret" not in anonymous
    assert "Upload README.md with huggingface_hub" in anonymous and "2 files" in anonymous

    owner = Client()
    owner.force_login(alice)
    mine = owner.get("/repos/", {"q": "alice"}).content.decode()
    assert "alice/secret" in mine and "private" in mine and "bob/other" not in mine
    assert "No repository matches" in owner.get("/repos/", {"q": "nothing-like-this"}).content.decode()

    for i in range(51):
        Repo.create("alice", f"many-{i:02d}", alice, private=False)
    first = Client().get("/repos/", {"q": "many"}).content.decode()
    assert "page 1 of 2" in first and 'href="?q=many&page=2"' in first and "alice/many-50" in first
    second = Client().get("/repos/", {"q": "many", "page": 2}).content.decode()
    assert "alice/many-00" in second and "alice/many-50" not in second
