"""Who may read and write: private repositories are invisible without a token of their owner,
writing takes a write-scoped token of the namespace's owner, and nobody creates repositories in
someone else's namespace or in the paths the hub's own pages use."""

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hub.api.models import ApiToken
from hub.hfapi.models import Repo


def test_it_hides_private_repos_from_anonymous_clients_and_other_users(private_repo, hub_url, bob_token, tmp_path):
    assert Repo.objects.get(namespace="alice", name="secret").private
    for token in (None, bob_token):
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(private_repo, "model.safetensors", endpoint=hub_url, token=token, cache_dir=tmp_path)
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=hub_url, token=token).model_info(private_repo)
    assert httpx2.get(f"{hub_url}/{private_repo}").status_code == 404


def test_it_serves_private_repos_to_a_read_token_of_their_owner(private_repo, hub_url, alice, tmp_path):
    read_token = ApiToken.issue(alice, "read only", ApiToken.Scope.READ)[1]
    path = hf_hub_download(private_repo, "model.safetensors", endpoint=hub_url, token=read_token, cache_dir=tmp_path)
    assert open(path, "rb").read() == b"weights"
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub_url, token=read_token).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=private_repo
        )
    assert refused.value.response.status_code == 403


def test_it_refuses_a_revoked_or_unknown_token(private_repo, hub_url, alice, tmp_path):
    token, plaintext = ApiToken.issue(alice, "soon revoked", ApiToken.Scope.READ)
    token.revoke()
    for bad in (plaintext, "hub_not-a-token"):
        response = httpx2.get(f"{hub_url}/api/models/{private_repo}", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401
        assert response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_it_lets_only_the_owner_write(private_repo, hub_url, bob, alice_token):
    Repo.objects.filter(namespace="alice", name="secret").update(private=False)
    bob_token = ApiToken.issue(bob, "bob", ApiToken.Scope.WRITE)[1]
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub_url, token=bob_token).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=private_repo
        )
    assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as anonymous:
        HfApi(endpoint=hub_url, token=False).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=private_repo
        )
    assert anonymous.value.response.status_code in (401, 404)
    assert HfApi(endpoint=hub_url).list_repo_files(private_repo) == [
        ".gitattributes",
        "config.json",
        "model.safetensors",
    ]


def test_it_creates_repos_only_in_the_callers_namespace(hub_url, bob_token, alice_token):
    bob = HfApi(endpoint=hub_url, token=bob_token)
    with pytest.raises(HfHubHTTPError) as refused:
        bob.create_repo("alice/mine")
    assert refused.value.response.status_code == 403
    url = bob.create_repo("bob/mine")
    assert url == f"{hub_url}/bob/mine" and url.repo_id == "bob/mine"
    assert bob.create_repo("bob/mine", exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as exists:
        bob.create_repo("bob/mine")
    assert exists.value.response.status_code == 409
    for reserved in ("jobs/mine", "api/mine", "models/mine"):
        with pytest.raises(HfHubHTTPError) as bad:
            HfApi(endpoint=hub_url, token=alice_token).create_repo(reserved)
        assert bad.value.response.status_code in (400, 403)


def test_it_leaves_other_apps_routes_alone(hub_url, alice_token):
    HfApi(endpoint=hub_url, token=alice_token).create_repo("alice/jobs")
    # the catalog, the jobs pages and APPEND_SLASH still answer, not the repository routes
    assert httpx2.get(f"{hub_url}/jobs/new").status_code == 301
    assert httpx2.get(f"{hub_url}/models/1").status_code == 301
    assert httpx2.get(f"{hub_url}/alice/jobs").status_code == 200
