"""compress() reads one decoder layer at a time from the safetensors files and streams the
result into shards: its output is what the whole model held in memory and saved by
transformers gives, and no more than one decoder layer is ever materialized."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from common.checkpoint_files import INDEX_NAME
from compress import CalibrationConfig, compress
from tests.compress.helpers import compress_in_process

SAME_FILES = ("config.json", "generation_config.json", "recipe.yaml")


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})
    return tensors


def _sharded(model_dir: Path, out: Path) -> Path:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").save_pretrained(out, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(model_dir / name, out / name)
    return out


def test_it_writes_byte_for_byte_what_the_whole_model_in_memory_writes(make_model, lambada, tmp_path):
    model_dir = make_model()  # bfloat16, untied LM head, one model.safetensors
    report = compress(model_dir, "w4a16-gptq", tmp_path / "lazy", calibration=CalibrationConfig(str(lambada), 4, 64))
    _, result = compress_in_process(model_dir, "w4a16-gptq", tmp_path / "whole", lambada)
    for name in ("model.safetensors", *SAME_FILES):
        assert (tmp_path / "lazy" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not (tmp_path / "lazy" / INDEX_NAME).exists()
    assert "lm_head.weight" in _tensors(tmp_path / "lazy")
    # the same count taken on the model held whole sees every layer at once
    assert report.peak_memory["decoder_layers_resident"] == 1 and result.resident_layers == 2


def test_it_reads_shards_keeps_tied_embeddings_and_writes_shards_of_the_size_asked(stories260k, lambada, tmp_path):
    from transformers import AutoModelForCausalLM

    sharded = _sharded(stories260k, tmp_path / "sharded")  # tied embeddings, float32, in 4 files
    assert len(json.loads((sharded / INDEX_NAME).read_text())["weight_map"]) > 0
    cap = 100_000
    report = compress(
        sharded,
        "w8a8-int8",
        tmp_path / "lazy",
        calibration=CalibrationConfig(str(lambada), 4, 64),
        shard_bytes=cap,
    )
    reference, _ = compress_in_process(sharded, "w8a8-int8", tmp_path / "whole", lambada)
    out = tmp_path / "lazy"
    for name in SAME_FILES:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    ours, whole = _tensors(out), _tensors(tmp_path / "whole")
    assert ours.keys() == whole.keys() and "lm_head.weight" not in ours
    for name, tensor in whole.items():
        assert ours[name].dtype == tensor.dtype and torch.equal(ours[name], tensor), name
    weight_map = json.loads((out / INDEX_NAME).read_text())["weight_map"]
    files = sorted(p.name for p in out.glob("*.safetensors"))
    assert sorted(set(weight_map.values())) == files and len(files) > 2 and weight_map.keys() == ours.keys()
    for path in out.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            # a shard over the cap holds one tensor bigger than the cap
            assert path.stat().st_size <= cap + 8192 or len(f.keys()) == 1, path.name
    assert report.peak_memory["decoder_layers_resident"] == 1
    loaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto").eval()
    ids = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)


def test_it_builds_the_model_as_from_pretrained_does_without_a_dtype_or_generation_config(
    make_model, lambada, tmp_path
):
    folder = tmp_path / "in"
    shutil.copytree(make_model(), folder)
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "dtype"}))
    compress(folder, "fp8-dynamic", tmp_path / "lazy")
    compress_in_process(folder, "fp8-dynamic", tmp_path / "whole", lambada)
    for name in ("model.safetensors", *SAME_FILES):
        assert (tmp_path / "lazy" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert json.loads((tmp_path / "lazy" / "config.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("damage", ["shape", "duplicate"])
def test_it_refuses_weight_files_that_do_not_fit_the_config_and_stores_nothing(stories260k, tmp_path, damage):
    folder = _sharded(stories260k, tmp_path / "in")
    index = json.loads((folder / INDEX_NAME).read_text())
    if damage == "shape":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 176}))
        match = "has shape"
    else:
        # the same tensor in a second file: which one a loader would take is up to it
        from safetensors.torch import save_file

        first = next(iter(index["weight_map"]))
        with safe_open(str(folder / index["weight_map"][first]), "pt") as f:
            save_file({first: f.get_tensor(first)}, str(folder / "extra.safetensors"))
        index["weight_map"]["extra"] = "extra.safetensors"
        (folder / INDEX_NAME).write_text(json.dumps(index))
        match = "more than one weight file"
    with pytest.raises(ValueError, match=match):
        compress(folder, "fp8-dynamic", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
