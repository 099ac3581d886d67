"""2:4 outputs: at least 2 zeros in every 4 consecutive inputs of every targeted Linear, saved
dense, with the fact recorded in our report rather than in config.json."""

import json

import pytest
import torch

from compress import PRESETS, compress
from compress.sparse import magnitude_prune, sparsegpt_prune

TWO_FOUR = [p for p in PRESETS if p.startswith("2of4")]


def assert_two_of_four(weight: torch.Tensor, name: str) -> None:
    groups = (weight == 0).unflatten(1, (weight.shape[1] // 4, 4)).sum(-1)
    assert (groups >= 2).all(), f"{name}: {int((groups < 2).sum())} groups of 4 with fewer than 2 zeros"


@pytest.mark.parametrize("preset", TWO_FOUR)
def test_every_2of4_output_has_two_zeros_in_every_group_of_four(preset, make_model, lambada, tmp_path):
    from transformers import AutoModelForCausalLM

    from compress import CalibrationConfig

    report = compress(
        make_model(layers=3), preset, tmp_path / "out", calibration=CalibrationConfig(str(lambada), 4, 64)
    )
    sparsity = report.sparsity
    assert sparsity["structure"] == "2:4" and "no sparsity_config" in sparsity["saved_as"]
    on_disk = json.loads((tmp_path / "out" / "compression_report.json").read_text())["sparsity"]
    assert on_disk == sparsity
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config.get("quantization_config", {}).get("sparsity_config", {}) == {}
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto")
    model(torch.tensor([[1, 2, 3]]))  # compressed checkpoints decompress on the first forward
    targeted = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert sorted(sparsity["modules"]) == sorted(targeted) and len(targeted) == 3 * 7
    for name in targeted:
        assert_two_of_four(model.get_submodule(name).weight, name)


def test_sparsegpt_reconstructs_better_than_magnitude():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 64, generator=g) @ torch.randn(64, 64, generator=g)  # correlated inputs
    w = torch.randn(96, 64, generator=g)
    h = 2 * x.T @ x / len(x)
    pruned, mask, _ = sparsegpt_prune(w, h, sparsity=0.5, n=2, m=4, block_size=32)
    baseline, _ = magnitude_prune(w, sparsity=0.5, n=2, m=4)
    assert_two_of_four(pruned, "sparsegpt")
    assert torch.equal(pruned == 0, mask)

    def error(v):
        return (x @ (v - w).T).norm()

    assert error(pruned) < 0.9 * error(baseline)


def test_unstructured_pruning_reaches_its_sparsity():
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    pruned, mask = magnitude_prune(w, sparsity=0.3, n=0, m=0)
    assert abs(mask.float().mean().item() - 0.3) < 0.01 and torch.equal(pruned == 0, mask)
