import json
import shutil
import struct

import pytest

from hub.catalog.checkpoints import CheckpointError, inspect_checkpoint, read_safetensors_header
from tests.helpers import write_tiny_checkpoint


def test_it_reads_a_real_checkpoint(stories260k):
    info = inspect_checkpoint(stories260k)
    assert info.architecture == "LlamaForCausalLM"
    assert info.model_type == "llama"
    assert info.dtype == "f32"
    assert 250_000 < info.num_parameters < 270_000  # stories260K
    assert {f["path"] for f in info.files} >= {"config.json", "model.safetensors", "tokenizer.json"}


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "extra/state.pkl", "x.ckpt"])
def test_it_refuses_pickle_files(tmp_path, name):
    write_tiny_checkpoint(tmp_path)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="pickle files are refused.*safetensors weights only"):
        inspect_checkpoint(tmp_path)


def test_it_refuses_architectures_outside_the_llama_family(tmp_path):
    write_tiny_checkpoint(tmp_path, architecture="GPT2LMHeadModel")
    with pytest.raises(CheckpointError, match="unsupported architecture GPT2LMHeadModel.*Llama family"):
        inspect_checkpoint(tmp_path)


@pytest.mark.parametrize("architecture", ["Gemma2ForCausalLM", "Gemma3ForCausalLM"])
def test_it_takes_gemma_checkpoints(tmp_path, architecture):
    write_tiny_checkpoint(tmp_path, architecture=architecture)
    assert inspect_checkpoint(tmp_path).architecture == architecture


@pytest.mark.parametrize("architecture", ["Qwen3MoeForCausalLM", "MixtralForCausalLM"])
def test_it_refuses_mixture_of_experts_checkpoints_which_compression_cannot_take_yet(tmp_path, architecture):
    write_tiny_checkpoint(tmp_path, architecture=architecture)
    with pytest.raises(CheckpointError, match=f"unsupported architecture {architecture}"):
        inspect_checkpoint(tmp_path)


def test_it_refuses_a_directory_without_safetensors(tmp_path):
    write_tiny_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no \\*.safetensors weights"):
        inspect_checkpoint(tmp_path)


def test_it_refuses_a_malformed_config(tmp_path):
    write_tiny_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        inspect_checkpoint(tmp_path)


def header_file(tmp_path, header: dict | bytes, data: bytes = b"", declared: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "declared", "message"),
    [
        (b"", b"", 2**40, "declared length"),
        (b"{oops", b"", None, "malformed safetensors header"),
        ([1, 2], b"", None, "not a JSON object"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, None, "outside the file"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16, None, "does not match"),
        ({"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16, None, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, b"\0" * 16, None, "malformed shape"),
        (
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
            },
            b"\0" * 24,
            None,
            "overlap",
        ),
    ],
)
def test_it_refuses_malformed_safetensors_headers(tmp_path, header, data, declared, message):
    path = header_file(tmp_path, header, data, declared)
    with pytest.raises(CheckpointError, match=message):
        read_safetensors_header(path)


def test_it_refuses_a_sharded_checkpoint_with_a_missing_shard(tmp_path, stories260k):
    shutil.copytree(stories260k, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="'model-00002-of-00002.safetensors' is not a file of this checkpoint"):
        inspect_checkpoint(tmp_path / "m")
