"""GPTQ, AWQ and SmoothQuant do what they are for, measured on layer outputs."""

import pytest
import torch
from compressed_tensors.quantization import preset_name_to_scheme

from compress import CalibrationConfig, compress
from compress.gptq import gptq_quantize
from compress.quant import quantize_weight
from compress.smooth import AWQ_MAPPINGS, default_mappings


def _problem(seed=0, rows=96, cols=256):
    g = torch.Generator().manual_seed(seed)
    # activations with a few large channels, as in LLMs
    x = torch.randn(4096, cols, generator=g) * (1 + 20 * (torch.rand(cols, generator=g) > 0.97))
    x = x @ (torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=g) / cols**0.5)
    return x, torch.randn(rows, cols, generator=g) * 0.05


@pytest.mark.parametrize("actorder", [False, True])
def test_gptq_reconstructs_layer_outputs_better_than_round_to_nearest(actorder):
    x, w = _problem()
    args = preset_name_to_scheme("W4A16", ["Linear"]).weights
    h = 2 * x.T @ x / len(x)
    gptq, loss = gptq_quantize(w, h, args, torch.bfloat16, actorder=actorder)
    rtn = quantize_weight(w, args, torch.bfloat16)

    def error(q):
        return (x @ (q.dequant - w).T).norm()

    assert error(gptq) < 0.7 * error(rtn)
    # the codes, scales and dequantized weights agree, groups contiguous whatever the order
    s = gptq.scale.float().repeat_interleave(128, dim=1)
    assert torch.equal(gptq.q.float() * s, gptq.dequant) and gptq.q.abs().max() <= 8
    assert loss.shape == (96,) and (loss > 0).all()


def test_gptq_keeps_pruned_weights_at_zero_including_asymmetric_codes():
    x, w = _problem(1)
    keep_zero = torch.rand(w.shape, generator=torch.Generator().manual_seed(2)) < 0.5
    args = preset_name_to_scheme("W4A16_ASYM", ["Linear"]).weights
    q, _ = gptq_quantize(w.masked_fill(keep_zero, 0), 2 * x.T @ x / len(x), args, torch.bfloat16, keep_zero=keep_zero)
    assert (q.dequant[keep_zero] == 0).all()
    zp = q.zero_point.repeat_interleave(128, dim=1)
    assert torch.equal(q.q[keep_zero], zp[keep_zero])


def _output_error(report) -> float:
    return sum(layer["output_rel_error"] for layer in report.layers)


def test_awq_and_smoothquant_lower_the_error_of_their_quantization(stories260k, lambada, tmp_path):
    calibration = CalibrationConfig(str(lambada), 8, 128)

    def channel(scheme: str, algo: str = "QuantizationModifier") -> str:
        return (
            f"q_stage:\n  q_modifiers:\n    {algo}: {{ignore: [lm_head], config_groups: {{g: {{targets: [Linear], "
            f"{scheme}}}}}}}\n"
        )

    w4 = "weights: {num_bits: 4, type: int, symmetric: true, strategy: channel}"
    w8a8 = (
        w4.replace("num_bits: 4", "num_bits: 8")
        + ", input_activations: {num_bits: 8, type: int, symmetric: true, strategy: token, dynamic: true}"
    )
    runs = {
        "rtn4": channel(w4),
        "awq4": "a_stage:\n  a_modifiers:\n    AWQModifier: {}\n" + channel(w4).replace("q_stage", "z_stage"),
        "w8a8": channel(w8a8),
        "sq+w8a8": "a_stage:\n  a_modifiers:\n    SmoothQuantModifier: {smoothing_strength: 0.5}\n"
        + channel(w8a8).replace("q_stage", "z_stage"),
    }
    err = {k: _output_error(compress(stories260k, r, tmp_path / k, calibration=calibration)) for k, r in runs.items()}
    assert err["awq4"] < err["rtn4"], err
    assert err["sq+w8a8"] < err["w8a8"], err


def test_smoothing_alone_leaves_the_function_unchanged(stories260k, lambada, tmp_path):
    from transformers import AutoModelForCausalLM

    compress(
        stories260k,
        "s_stage:\n  s_modifiers:\n    SmoothQuantModifier: {smoothing_strength: 0.8}\n",
        tmp_path / "out",
        calibration=CalibrationConfig(str(lambada), 4, 64),
    )
    base = AutoModelForCausalLM.from_pretrained(stories260k)
    smoothed = AutoModelForCausalLM.from_pretrained(tmp_path / "out")

    def norm(m):
        return m.model.layers[0].input_layernorm.weight

    assert not torch.allclose(norm(base), norm(smoothed))
    ids = torch.tensor([[1, 400, 7, 33, 90, 12]])
    with torch.no_grad():
        torch.testing.assert_close(base(ids).logits, smoothed(ids).logits, rtol=1e-4, atol=1e-4)


def test_smoothing_leaves_gemmas_function_unchanged(make_model, lambada, tmp_path):
    # Gemma's MLP reads its pre-feedforward norm, and its norms scale by (1 + weight)
    from transformers import AutoModelForCausalLM

    base_dir = make_model(arch="gemma3", dtype=torch.float32)
    recipe = "s_stage:\n  s_modifiers:\n    SmoothQuantModifier: {smoothing_strength: 0.8}\n"
    compress(base_dir, recipe, tmp_path / "out", calibration=CalibrationConfig(str(lambada), 4, 64))
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    smoothed = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    before, after = base.model.layers[0], smoothed.model.layers[0]
    assert not torch.allclose(before.pre_feedforward_layernorm.weight, after.pre_feedforward_layernorm.weight)
    assert torch.equal(before.post_attention_layernorm.weight, after.post_attention_layernorm.weight)
    ids = torch.tensor([[1, 400, 7, 33, 90, 12]])
    with torch.no_grad():
        torch.testing.assert_close(base(ids).logits, smoothed(ids).logits, rtol=1e-4, atol=1e-4)


def test_awq_balances_gemmas_mlp_against_its_pre_feedforward_norm():
    smooth = [s for s, _ in default_mappings("awq", "gemma3_text")]
    assert "re:.*pre_feedforward_layernorm$" in smooth and "re:.*post_attention_layernorm$" not in smooth
    assert default_mappings("awq", "llama") == AWQ_MAPPINGS


def test_the_mse_observer_finds_scales_with_less_weight_error_than_min_max():
    from compress.recipe import load_recipe

    recipe = load_recipe("d_stage:\n  d_modifiers:\n    GPTQModifier: {scheme: W4A16_ASYM, weight_observer: mse}\n")
    mse = recipe.steps[0].schemes[0].weights
    minmax = mse.model_copy(update={"observer": None})
    w = torch.randn(128, 512, generator=torch.Generator().manual_seed(3)) * torch.rand(
        128, 1, generator=torch.Generator().manual_seed(4)
    )

    def error(args):
        return (quantize_weight(w, args, torch.bfloat16).dequant - w).norm()

    assert mse.observer == "mse" and error(mse) < 0.95 * error(minmax)
    with pytest.raises(NotImplementedError, match="weight_observer"):
        load_recipe("d_stage:\n  d_modifiers:\n    GPTQModifier: {scheme: W4A16, weight_observer: imatrix_mse}\n")
