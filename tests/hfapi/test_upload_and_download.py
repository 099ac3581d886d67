"""Stock huggingface_hub clients upload a checkpoint to the live hub and download it back."""

import json
import os

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

from hub.catalog.checkpoints import sha256_file
from hub.hfapi.models import Repo
from tests.helpers import folder_hashes, load_from_hub


@pytest.fixture
def uploaded(hub_url, alice_token, stories260k) -> str:
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/stories")
    api.upload_folder(folder_path=stories260k, repo_id="alice/stories", commit_message="the checkpoint")
    return "alice/stories"


def test_it_round_trips_a_checkpoint_byte_for_byte(uploaded, hub_url, stories260k, tmp_path):
    folder = snapshot_download(uploaded, endpoint=hub_url, cache_dir=tmp_path / "cache")
    downloaded = folder_hashes(tmp_path / "cache" / "models--alice--stories" / "snapshots" / os.path.basename(folder))
    assert {k: v for k, v in downloaded.items() if k != ".gitattributes"} == folder_hashes(stories260k)

    head = Repo.objects.get(namespace="alice", name="stories").head
    weights = head.entries.get(path="model.safetensors")
    assert weights.lfs and weights.sha256 == sha256_file(stories260k / "model.safetensors")
    assert not head.entries.get(path="config.json").lfs  # small text travels inline in the commit
    assert os.path.basename(folder) == head.sha


def test_it_lists_files_and_metadata_like_the_hub(uploaded, hub_url, stories260k):
    api = HfApi(endpoint=hub_url)
    info = api.model_info(uploaded, files_metadata=True)
    assert info.id == uploaded and len(info.sha) == 40 and info.private is False
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["model.safetensors"].lfs.sha256 == sha256_file(stories260k / "model.safetensors")
    assert siblings["config.json"].size == (stories260k / "config.json").stat().st_size
    assert sorted(api.list_repo_files(uploaded)) == sorted([".gitattributes", *os.listdir(stories260k)])
    meta = api.get_safetensors_metadata(uploaded)  # reads the header with Range requests
    assert meta.parameter_count == {
        "F32": sum(t.parameter_count for t in meta.files_metadata["model.safetensors"].tensors.values())
    }


def test_it_pins_a_download_to_a_commit(uploaded, hub_url, alice_token, tmp_path):
    api = HfApi(endpoint=hub_url, token=alice_token)
    first = api.model_info(uploaded).sha
    second = api.upload_file(path_or_fileobj=b'{"changed": true}', path_in_repo="config.json", repo_id=uploaded).oid
    assert second != first
    old = hf_hub_download(uploaded, "config.json", revision=first, endpoint=hub_url, cache_dir=tmp_path)
    new = hf_hub_download(uploaded, "config.json", endpoint=hub_url, cache_dir=tmp_path)
    assert json.loads(open(new).read()) == {"changed": True}
    assert json.loads(open(old).read())["model_type"] == "llama"


@pytest.mark.slow
def test_it_loads_in_transformers_from_the_hub(uploaded, hub_url, stories260k, tmp_path):
    words = load_from_hub(hub_url, uploaded, stories260k, tmp_path, "sum(p.numel() for p in remote.parameters())")
    assert words[0] == "loaded"
