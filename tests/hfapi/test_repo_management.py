"""Browsing and managing the hub's repositories with the stock client: list_models (every
filter honoured or refused), list_repo_refs, list_repo_commits, update_repo_settings, move_repo
and delete_repo, each seeing only what the caller may read and changing only what the caller owns."""

import httpx2
import pytest
from django.test import Client
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hub.catalog.models import Publication, Variant
from hub.hfapi import storage
from hub.hfapi.models import Repo
from tests.helpers import paste

pytestmark = pytest.mark.gunicorn

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
    with pytest.raises(HfHubHTTPError, match="so it keeps its id"):
        alice.move_repo("alice/published", "alice/renamed")
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


def test_it_honours_every_list_filter_or_refuses_it(repos, hub_url, stories260k):
    alice, _ = repos
    alice.create_repo("alice/stories")
    alice.upload_folder(folder_path=stories260k, repo_id="alice/stories")
    card = b"---\npipeline_tag: text-generation\nlibrary_name: llama.c\ndatasets:\n- roneneldan/TinyStories\n---\n"
    alice.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/stories")
    anonymous = HfApi(endpoint=hub_url, token=False)
    assert ids(anonymous.list_models(pipeline_tag="text-generation")) == ["alice/stories"]
    assert ids(anonymous.list_models(trained_dataset="roneneldan/TinyStories")) == ["alice/stories"]
    assert ids(anonymous.list_models(filter="license:apache-2.0")) == ["alice/small-w4a16"]
    assert ids(anonymous.list_models(filter="transformers")) == ["alice/small-w4a16"]
    by_library = httpx2.get(f"{hub_url}/api/models", params={"library": "llama.c", "pipeline_tag": "fill-mask"})
    assert by_library.json() == []
    by_library = httpx2.get(f"{hub_url}/api/models", params={"library": "llama.c"})
    assert [m["id"] for m in by_library.json()] == ["alice/stories"]
    assert ids(anonymous.list_models(gated=False, sort="id")) == ["alice/small-w4a16", "alice/stories", "bob/other"]
    assert ids(anonymous.list_models(gated=True)) == []  # nothing here is gated

    total = anonymous.model_info("alice/stories", expand=["safetensors"]).safetensors.total
    assert 200_000 < total < 300_000
    assert ids(anonymous.list_models(num_parameters="min:100K,max:1M")) == ["alice/stories"]
    assert ids(anonymous.list_models(num_parameters="min:1M")) == []
    listed = next(iter(anonymous.list_models(num_parameters="max:1M", expand=["safetensors"])))
    assert listed.safetensors.total == total

    for params in ({"apps": "vllm"}, {"inference": "warm"}, {"config": "True"}, {"emissions_thresholds": "1"}):
        refused = httpx2.get(f"{hub_url}/api/models", params=params)
        assert refused.status_code == 400 and refused.headers["X-Error-Code"] == "FilterNotSupported", params
        assert f"does not filter models by {next(iter(params))}" in refused.json()["error"]
    with pytest.raises(HfHubHTTPError, match="does not filter models by config"):
        list(anonymous.list_models(fetch_config=True))
    with pytest.raises(HfHubHTTPError, match="num_parameters must read like"):
        list(anonymous.list_models(num_parameters="lots"))


def test_it_moves_a_repository_with_its_history_and_refs(repos, hub_url, tmp_path):
    alice, bob = repos
    alice.create_tag("alice/small-w4a16", tag="v1")
    history = [c.commit_id for c in alice.list_repo_commits("alice/small-w4a16")]
    alice.move_repo("alice/small-w4a16", "alice/small-int4")
    assert [c.commit_id for c in alice.list_repo_commits("alice/small-int4")] == history
    assert [t.name for t in alice.list_repo_refs("alice/small-int4").tags] == ["v1"]
    card = hf_hub_download("alice/small-int4", "README.md", revision="v1", endpoint=hub_url, cache_dir=tmp_path)
    assert open(card).read() == CARD
    assert not alice.repo_exists("alice/small-w4a16")

    with pytest.raises(HfHubHTTPError, match="only under your own name") as refused:
        alice.move_repo("alice/small-int4", "bob/small-int4")
    assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError, match="already exists") as refused:
        alice.move_repo("alice/small-int4", "alice/secret")
    assert refused.value.response.status_code == 409
    with pytest.raises(RepositoryNotFoundError):
        bob.move_repo("alice/secret", "bob/secret")  # not even told it exists
    with pytest.raises(HfHubHTTPError, match="not 'space'"):
        alice.move_repo("alice/small-int4", "alice/small-space", repo_type="space")
    assert alice.repo_exists("alice/small-int4") and alice.repo_exists("alice/secret")


def test_it_lists_the_callers_repositories_with_their_storage(repos, hub_url, alice_token, tmp_path):
    alice, bob = repos
    alice.create_repo("alice/data", repo_type="dataset")
    mine = {r.id: r for r in alice.list_user_repos()}
    assert sorted((r.id, r.type, r.visibility) for r in mine.values()) == [
        ("alice/data", "dataset", "public"),
        ("alice/secret", "model", "private"),
        ("alice/small-w4a16", "model", "public"),
    ]
    gitattributes = mine["alice/secret"].storage
    assert gitattributes > 0 and mine["alice/small-w4a16"].storage == gitattributes + len(CARD)
    assert round(sum(r.storage_percent for r in mine.values())) == 100
    assert [r.id for r in bob.list_user_repos()] == ["bob/other"]
    with pytest.raises(HfHubHTTPError):
        list(HfApi(endpoint=hub_url, token=False).list_user_repos())

    shell = paste(f"HF_ENDPOINT={hub_url} HF_TOKEN={alice_token} hf repos ls", tmp_path)
    assert shell.returncode == 0 and "alice/small-w4a16" in shell.stdout and "bob/other" not in shell.stdout


def test_it_tells_a_caller_what_it_may_do_with_a_repository(repos):
    alice, bob = repos
    assert alice.get_full_repo_name("small") == "alice/small"  # from whoami
    assert alice.run_as_future(alice.model_info, "alice/secret").result().private
    alice.auth_check("alice/secret")
    alice.auth_check("alice/secret", write=True)
    bob.auth_check("alice/small-w4a16")
    with pytest.raises(HfHubHTTPError) as refused:
        bob.auth_check("alice/small-w4a16", write=True)
    assert refused.value.response.status_code == 403
    with pytest.raises(RepositoryNotFoundError):
        bob.auth_check("alice/secret")
