"""What the Hugging Face-compatible API gives away: a private repository answers every endpoint
exactly as a missing one does (404, never 403), session cookies cannot write through the
token-only (CSRF-exempt) endpoints, and the Hub tokens the stages use never reach a stage's
error, its log, the job's pages or the process logs."""

import json
import logging

import httpx2
import pytest
from django.contrib.auth.models import User
from django.test import Client
from huggingface_hub import HfApi

from hub.catalog.models import BaseModel
from hub.hfapi.models import Repo
from hub.jobs.models import Job, Recipe
from tests.helpers import run_queued

HF_SECRET = "hf_" + "S3cr3tT0kenThatMustNeverShow" * 2


def requests_to(repo: str, sha: str) -> list[tuple[str, str, dict]]:
    body = {"files": [{"path": "x.txt", "size": 1, "sample": ""}]}
    batch = {"operation": "upload", "objects": [{"oid": "0" * 64, "size": 1}]}
    commit = json.dumps({"key": "header", "value": {"summary": "x"}}) + "\n"
    return [
        ("GET", f"/api/models/{repo}", {}),
        ("GET", f"/api/models/{repo}/revision/{sha}", {}),
        ("GET", f"/api/models/{repo}/tree/main", {}),
        ("GET", f"/api/models/{repo}/tree/{sha}?recursive=1", {}),
        ("HEAD", f"/{repo}/resolve/main/config.json", {}),
        ("GET", f"/{repo}/resolve/{sha}/config.json", {}),
        ("GET", f"/{repo}/archive/main.tar", {}),
        ("POST", f"/api/models/{repo}/preupload/main", {"json": body}),
        ("POST", f"/api/models/{repo}/commit/main", {"content": commit}),
        ("POST", f"/{repo}.git/info/lfs/objects/batch", {"json": batch}),
    ]


def test_it_answers_for_a_private_repo_exactly_as_for_a_missing_one(private_repo, hub_url, bob_token, alice_token):
    sha = HfApi(endpoint=hub_url, token=alice_token).model_info(private_repo).sha
    for token in (None, bob_token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path, extra in requests_to(private_repo, sha):
            hidden = httpx2.request(method, hub_url + path, headers=headers, **extra)
            missing = httpx2.request(
                method, hub_url + path.replace("alice/secret", "alice/nothing"), headers=headers, **extra
            )
            assert hidden.status_code == missing.status_code == 404, (method, path, hidden.status_code)
            assert hidden.headers.get("X-Error-Code") == "RepoNotFound"
            assert hidden.content.replace(b"secret", b"nothing") == missing.content, path
    owner = {"Authorization": f"Bearer {alice_token}"}
    assert [
        httpx2.request(m, hub_url + p, headers=owner, **x).status_code
        for m, p, x in requests_to(private_repo, sha)
        if m != "POST"
    ] == [200] * 7
    assert Repo.objects.get(namespace="alice", name="secret").commits.count() == 2  # nothing written by others


def test_it_never_writes_on_a_session_cookie_alone(alice):
    """The write endpoints are CSRF-exempt because they take bearer tokens only: a signed-in
    browser (which a hostile page could drive) gets nothing done through them."""
    browser = Client()
    browser.force_login(alice)
    create = browser.post("/api/repos/create", {"name": "csrf"}, content_type="application/json")
    assert create.status_code == 401 and "needs a token" in create.json()["error"]
    assert not Repo.objects.filter(name="csrf").exists()


@pytest.fixture
def secrets(settings, hub_url):
    settings.HF_ENDPOINT = hub_url
    settings.HF_TOKEN = HF_SECRET
    settings.HF_TOKEN_REPOS = ["alice/*"]  # lent for these, so a fetch of one sends it
    settings.PUBLISH_HF_TOKEN = HF_SECRET


def assert_nowhere(secret: str, job: Job, caplog, staff: User) -> None:
    job.refresh_from_db()
    rows = [job.error, *(f"{s.error}\n{s.message}\n{s.log}\n{json.dumps(s.outputs)}" for s in job.stages.all())]
    assert all(secret not in row for row in rows)
    client = Client()
    client.force_login(staff)
    for url in (f"/jobs/{job.pk}/", f"/api/v1/jobs/{job.pk}", "/jobs/"):
        assert secret not in client.get(url).content.decode()
    assert secret not in caplog.text


def test_it_keeps_the_hub_token_out_of_a_failed_fetch(secrets, private_repo, caplog, db):
    caplog.set_level(logging.DEBUG)
    base = BaseModel.objects.create(name="alice/secret", hf_repo_id="alice/secret", revision="main")
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], suite="", benchmark_profile="")
    assert run_queued(job, "fetch") == "failed"
    stage = job.stages.get(kind="fetch")
    assert "alice/secret" in stage.error  # the stage says what failed ...
    assert_nowhere(HF_SECRET, job, caplog, User.objects.create_user("root", is_staff=True))  # ... and not with what


def test_it_keeps_the_publish_token_out_of_a_failed_publish(secrets, recorded_variant_job, caplog):
    caplog.set_level(logging.DEBUG)
    job = recorded_variant_job
    assert run_queued(job, "publish") == "failed"
    assert "alice/elsewhere" in job.stages.get(kind="publish").error  # refused by the other hub: a bad token
    assert_nowhere(HF_SECRET, job, caplog, User.objects.create_user("root", is_staff=True))
