"""Stock huggingface_hub clients upload a checkpoint to the live hub and download it back, and
read what it holds (files, safetensors headers and parameter counts) as from the Hub."""

import json
import os

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import EntryNotFoundError
from safetensors.torch import save_file

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
    counted = api.model_info(uploaded, expand=["safetensors", "sha"])  # read by the hub from the same header
    assert counted.safetensors.parameters == meta.parameter_count and counted.sha == info.sha
    assert counted.safetensors.total == sum(meta.parameter_count.values()) and counted.siblings is None


def test_it_lets_a_client_verify_what_it_downloaded(uploaded, hub_url, tmp_path):
    api = HfApi(endpoint=hub_url)
    folder = tmp_path / "local"
    api.snapshot_download(uploaded, local_dir=folder)
    verified = api.verify_repo_checksums(uploaded, local_dir=folder)  # git blob ids and LFS sha256 from the tree
    assert verified.checked_count == len(api.list_repo_files(uploaded))
    assert not verified.mismatches and not verified.missing_paths
    (folder / "config.json").write_text("{}")
    assert [m["path"] for m in api.verify_repo_checksums(uploaded, local_dir=folder).mismatches] == ["config.json"]

    weights = api.get_hf_file_metadata(url=hf_hub_url(uploaded, "model.safetensors", endpoint=hub_url))
    assert (
        weights.etag == sha256_file(folder / "model.safetensors")
        and weights.size == (folder / "model.safetensors").stat().st_size
    )
    assert weights.commit_hash == api.model_info(uploaded).sha


def test_it_takes_lfs_files_uploaded_before_their_commit(uploaded, hub_url, alice_token):
    api = HfApi(endpoint=hub_url, token=alice_token)
    later = CommitOperationAdd("extra/weights.bin", os.urandom(4096))
    api.preupload_lfs_files(uploaded, [later])
    assert "extra/weights.bin" not in api.list_repo_files(uploaded)
    api.create_commit(uploaded, [later], commit_message="the extra weights")
    assert api.get_paths_info(uploaded, ["extra/weights.bin"])[0].lfs.size == 4096


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


def test_it_reads_every_shard_header_of_a_sharded_checkpoint_in_one_request(hub_url, alice_token, tmp_path):
    shards = {
        "model-00001-of-00002.safetensors": {"embed.weight": torch.zeros(8, 4), "norm.weight": torch.ones(4)},
        "model-00002-of-00002.safetensors": {"head.weight": torch.zeros(8, 4, dtype=torch.bfloat16)},
    }
    for shard, tensors in shards.items():
        save_file(tensors, tmp_path / shard)
    weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    index = {"metadata": {"total_size": 208}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/sharded")
    api.upload_folder(folder_path=tmp_path, repo_id="alice/sharded", allow_patterns="model*")

    meta = api.get_sharded_safetensors_metadata("alice/sharded")
    assert meta.sharded and meta.metadata == {"total_size": 208} and meta.weight_map == weight_map
    assert meta.parameter_count == {"F32": 36, "BF16": 32}
    assert meta.files_metadata == api.get_safetensors_metadata("alice/sharded").files_metadata  # read by the client
    assert api.model_info("alice/sharded", expand=["safetensors"]).safetensors.parameters == {"F32": 36, "BF16": 32}

    with pytest.raises(EntryNotFoundError):
        api.get_sharded_safetensors_metadata("alice/sharded", filename="config.json")
    del weight_map["head.weight"]
    weight_map["lost.weight"] = "model-00003-of-00002.safetensors"
    api.upload_file(
        path_or_fileobj=json.dumps(index).encode(), path_in_repo="model.safetensors.index.json", repo_id="alice/sharded"
    )
    with pytest.raises(EntryNotFoundError, match="names the shard model-00003-of-00002.safetensors"):
        api.get_sharded_safetensors_metadata("alice/sharded")
