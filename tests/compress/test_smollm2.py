"""Every preset on the real SmolLM2-135M-Instruct (its first decoder layers, see the
`smollm2_slice` fixture): the checkpoint loads in transformers on the CPU and computes exactly
what our fake-quantized model computes. (Quality, on the whole model: bench/compress_quality.py.)"""

import pytest
import torch

from compress import PRESETS
from compress.save import load_dequantized
from tests.compress.helpers import compress_in_process
from tests.compress.test_sparsity import assert_two_of_four

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_on_smollm2_loads_in_transformers_with_our_logits(preset, smollm2_slice, lambada, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference, result = compress_in_process(smollm2_slice, preset, tmp_path / "out", lambada, samples=2, seq_len=64)
    decoder_linears = {n for n, m in reference.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    assert set(result.quantized) | set(result.pruned) == decoder_linears
    if preset == "w4a16-asym":
        # transformers with compressed-tensors 0.20 cannot load packed asymmetric zero points
        decoded = load_dequantized(tmp_path / "out")
        for name in result.quantized:
            assert torch.equal(decoded[f"{name}.weight"], reference.get_submodule(name).weight), name
        return
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").eval()
    ids = AutoTokenizer.from_pretrained(smollm2_slice)(
        "The capital of France is Paris. The capital of Italy is", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        ours, theirs = reference(ids).logits, loaded(ids).logits
    assert torch.equal(ours, theirs)
    if result.pruned:
        for name in result.pruned:
            assert_two_of_four(loaded.get_submodule(name).weight, name)
