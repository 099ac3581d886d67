"""The fetch stage downloads a base model from a Hub endpoint: here, the live test hub, which
stands in for huggingface.co (HUB_HF_ENDPOINT points at it)."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hub.api.models import ApiToken
from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe
from tests.helpers import folder_hashes, run_queued, write_tiny_checkpoint


@pytest.fixture
def upstream(hub_url, alice_token, settings) -> HfApi:
    settings.HF_ENDPOINT = hub_url
    return HfApi(endpoint=hub_url, token=alice_token)


def fetch(name: str) -> Job:
    base = BaseModel.objects.create(name=name, hf_repo_id=name, revision="main")
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], suite="", benchmark_profile="")
    run_queued(job, "fetch")
    return job


def test_it_downloads_and_verifies_a_snapshot(upstream, stories260k):
    upstream.create_repo("alice/stories")
    sha = upstream.upload_folder(folder_path=stories260k, repo_id="alice/stories").oid
    job = fetch("alice/stories")
    stage = job.stages.get(kind="fetch")
    assert stage.status == "done", stage.error
    base = BaseModel.objects.get(name="alice/stories")
    assert base.status == BaseModel.Status.READY and base.resolved_sha == sha
    assert base.architecture == "LlamaForCausalLM" and base.num_parameters == 260_032
    stored = folder_hashes(Path(base.local_path))
    assert stored == folder_hashes(stories260k)
    assert {f["path"]: f["sha256"] for f in base.files} == stored


def test_it_refuses_a_repo_with_only_pickle_weights(upstream, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickled")
    upstream.create_repo("alice/pickled")
    upstream.upload_folder(folder_path=folder, repo_id="alice/pickled")
    stage = fetch("alice/pickled").stages.get(kind="fetch")
    assert stage.status == "failed" and "has only pickle weights (pytorch_model.bin)" in stage.error
    assert BaseModel.objects.get(name="alice/pickled").status == BaseModel.Status.PENDING


def test_it_refuses_an_architecture_outside_the_llama_family(upstream, tmp_path):
    folder = write_tiny_checkpoint(tmp_path / "gpt2", architecture="GPT2LMHeadModel")
    upstream.create_repo("alice/gpt2")
    upstream.upload_folder(folder_path=folder, repo_id="alice/gpt2")
    stage = fetch("alice/gpt2").stages.get(kind="fetch")
    assert stage.status == "failed" and "unsupported architecture GPT2LMHeadModel" in stage.error


def test_it_says_which_repository_is_missing(upstream):
    stage = fetch("alice/nothing").stages.get(kind="fetch")
    assert stage.status == "failed" and "alice/nothing: no such repository" in stage.error


def submit_over_the_api(hub_url: str, token: str, repo_id: str) -> Job:
    body = json.dumps({"hf_id": repo_id, "presets": ["w8a16"], "suite": "", "benchmark_profile": ""}).encode()
    request = urllib.request.Request(
        f"{hub_url}/api/v1/jobs",
        body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return Job.objects.get(pk=json.load(urllib.request.urlopen(request))["id"])


@pytest.mark.parametrize("private", [False, True])
def test_it_compresses_a_model_uploaded_to_this_hub(hub_url, alice_token, stories260k, settings, private):
    """An air-gapped hub's way in for a model, besides import_model: upload it with the stock
    client, then submit a job for its repository. huggingface.co is not asked."""
    settings.HF_ENDPOINT = "http://127.0.0.1:9"  # nothing listens there
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/mine", private=private)
    sha = api.upload_folder(folder_path=stories260k, repo_id="alice/mine").oid
    job = submit_over_the_api(hub_url, alice_token, "alice/mine")
    assert run_queued(job, "fetch") == "done", job.stages.get(kind="fetch").error
    base = BaseModel.objects.get(pk=job.base_model_id)
    assert base.on_this_hub and base.resolved_sha == sha and base.private == private
    request = urllib.request.Request(
        f"{hub_url}/api/v1/models/{base.pk}", headers={"Authorization": f"Bearer {alice_token}"}
    )
    assert json.load(urllib.request.urlopen(request))["on_this_hub"] is True
    assert folder_hashes(Path(base.local_path)) == folder_hashes(stories260k)
    assert not ApiToken.objects.filter(revoked_at__isnull=True, name__startswith="fetch stage").exists()


def test_it_never_takes_someone_elses_private_repository(hub_url, alice_token, bob_token, stories260k, settings):
    settings.HF_ENDPOINT = "http://127.0.0.1:9"
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/secret", private=True)
    api.upload_folder(folder_path=stories260k, repo_id="alice/secret")
    with pytest.raises(
        urllib.error.HTTPError
    ) as refused:  # not found, as the Hub API answers bob, and not asked upstream
        submit_over_the_api(hub_url, bob_token, "alice/secret")
    assert refused.value.code == 422 and "alice/secret: not found" in refused.value.read().decode()
    assert not Job.objects.exists() and not BaseModel.objects.exists()
