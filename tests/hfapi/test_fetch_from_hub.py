"""The fetch stage downloads a base model from a Hub endpoint: here, the live test hub, which
stands in for huggingface.co (HUB_HF_ENDPOINT points at it)."""

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe
from tests.conftest import write_tiny_checkpoint
from tests.hfapi.conftest import folder_hashes
from tests.workers.conftest import run_queued


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
