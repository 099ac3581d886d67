"""The hub's Hugging Face token reaches gated and private repositories on the hub's account. A
user naming any `hf_id` had the fetch (and the form's check) ask for it with that token, and a
private repository of this hub that the user may not read fell through to upstream, with the
token too. Upstream here is a named fake of huggingface.co on loopback that answers "gated" to
everything and records the Authorization header of each request."""

import json
from collections.abc import Iterator

import httpx2
import pytest
from huggingface_hub import HfApi

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe
from tests.helpers import Listener, run_queued

HUB_TOKEN = "hf_the-hubs-own-fetch-token"


@pytest.fixture
def upstream(settings, monkeypatch) -> Iterator[Listener]:
    from huggingface_hub import constants

    # a named fake of huggingface.co: every repository is gated to whoever asks
    gated = "Access to this model is restricted."
    fake = Listener(
        403,
        {"X-Error-Code": "GatedRepo", "X-Error-Message": gated, "Content-Type": "application/json"},
        json.dumps({"error": gated}).encode(),
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    settings.HF_ENDPOINT, settings.HF_TOKEN, settings.HF_TOKEN_REPOS = fake.url, HUB_TOKEN, ["meta-llama/*"]
    yield fake
    fake.close()


def fetch(hf_id: str, owner) -> Job:
    base = BaseModel.objects.create(name=hf_id, hf_repo_id=hf_id, revision="main", owner=owner)
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], owner=owner, suite="", benchmark_profile="")
    assert run_queued(job, "fetch") == "failed"
    return job


def test_it_fetches_a_repository_nobody_listed_anonymously(upstream, bob):
    job = fetch("someone/gated-model", bob)
    assert upstream.requests and upstream.authorizations() == {""}
    error = job.stages.get(kind="fetch").error
    assert "someone/gated-model is gated" in error and "HUB_HF_TOKEN_REPOS" in error and HUB_TOKEN not in error


def test_it_lends_the_token_to_the_repositories_an_operator_listed(upstream, bob):
    fetch("meta-llama/Llama-3.2-1B", bob)
    assert upstream.authorizations() == {f"Bearer {HUB_TOKEN}"}


def submit(url: str, token: str, hf_id: str) -> httpx2.Response:
    return httpx2.post(
        f"{url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        json={"hf_id": hf_id, "presets": ["w8a16"], "suite": "", "benchmark_profile": ""},
    )


def test_it_asks_upstream_anonymously_at_submission(start_gunicorn, upstream, bob, bob_token):
    hub = start_gunicorn(
        HUB_HF_ENDPOINT=upstream.url, HUB_HF_TOKEN=HUB_TOKEN, HUB_HF_TOKEN_REPOS="meta-llama/*", HF_HUB_OFFLINE="0"
    )
    answer = submit(hub.url, bob_token, "someone/gated-model")
    assert answer.status_code == 422 and "HUB_HF_TOKEN_REPOS" in answer.text, answer.text
    assert upstream.requests and upstream.authorizations() == {""}
    assert not Job.objects.exists()


def test_it_answers_not_found_for_a_private_repository_of_this_hub(
    start_gunicorn, upstream, alice_token, bob_token, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    hub = start_gunicorn(
        HUB_HF_ENDPOINT=upstream.url, HUB_HF_TOKEN=HUB_TOKEN, HUB_HF_TOKEN_REPOS="*", HF_HUB_OFFLINE="0"
    )
    HfApi(endpoint=hub.url, token=alice_token).create_repo("alice/secret", private=True)
    answer = submit(hub.url, bob_token, "alice/secret")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["hf_id"][0]["message"] == "alice/secret: not found"
    assert upstream.requests == [] and not Job.objects.exists() and not BaseModel.objects.exists()
