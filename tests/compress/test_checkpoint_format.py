"""What compress writes is the compressed-tensors format: transformers loads it and computes
exactly what our own fake-quantized model computes."""

import json

import pytest
import torch
from safetensors import safe_open

from compress import PRESETS
from compress.quant import fake_quantize_activation
from compress.save import load_dequantized
from tests.compress.helpers import compress_in_process

# transformers cannot load asymmetric pack-quantized checkpoints with compressed-tensors 0.20
# (its meta-device setup expects unpacked zero points); test_asymmetric_... covers that preset
LOADABLE = [p for p in PRESETS if p != "w4a16-asym"]


@pytest.mark.parametrize("preset", LOADABLE)
def test_it_writes_checkpoints_transformers_loads_with_logits_equal_to_our_fake_quantized_model(
    preset, make_model, lambada, tmp_path
):
    from transformers import AutoModelForCausalLM

    model_dir = make_model()
    reference, result = compress_in_process(model_dir, preset, tmp_path / "out", lambada)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").eval()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = reference(ids).logits, loaded(ids).logits
    assert torch.equal(ours, theirs)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    if result.quantized:
        q = config["quantization_config"]
        assert q["quant_method"] == "compressed-tensors" and q["quantization_status"] == "compressed"
        assert q["ignore"] == ["lm_head"] and q["sparsity_config"] == {}
    else:
        assert "quantization_config" not in config


def test_asymmetric_checkpoints_decode_to_our_weights(make_model, lambada, tmp_path):
    reference, result = compress_in_process(make_model(), "w4a16-asym", tmp_path / "out", lambada)
    decoded = load_dequantized(tmp_path / "out")
    assert set(result.quantized) and all(result.quantized[n].zero_point is not None for n in result.quantized)
    for name in result.quantized:
        assert torch.equal(decoded[f"{name}.weight"], reference.get_submodule(name).weight), name
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        zp = f.get_tensor("model.layers.0.mlp.down_proj.weight_zero_point")
    # zero points packed along the output dimension: [out / 8, groups] int32
    assert zp.dtype == torch.int32 and tuple(zp.shape) == (128 // 8, 256 // 128)


def test_int4_codes_are_packed_eight_to_a_word_low_nibble_first_offset_by_eight(make_model, lambada, tmp_path):
    _, result = compress_in_process(make_model(), "w4a16", tmp_path / "out", lambada)
    name = "model.layers.1.self_attn.o_proj"
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        packed = f.get_tensor(f"{name}.weight_packed")
        scale = f.get_tensor(f"{name}.weight_scale")
        assert f.get_tensor(f"{name}.weight_shape").tolist() == [128, 128]
        assert not any(k.endswith("weight_g_idx") or k.endswith("weight_zero_point") for k in f.keys())
    assert packed.dtype == torch.int32 and tuple(packed.shape) == (128, 128 // 8)
    nibbles = torch.stack([(packed >> (4 * i)) & 0xF for i in range(8)], dim=-1).flatten(1)
    assert torch.equal(nibbles - 8, result.quantized[name].q.long())
    assert torch.equal(scale, result.quantized[name].scale) and scale.dtype == torch.bfloat16


@pytest.mark.parametrize("scheme", ["W8A8", "FP8_DYNAMIC", "FP8_BLOCK"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_our_activation_quantization_is_compressed_tensors_own(scheme, dtype):
    from compressed_tensors.quantization import preset_name_to_scheme
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp

    args = preset_name_to_scheme(scheme, ["Linear"]).input_activations
    x = (torch.randn(3, 17, 256, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 2, 256)).to(dtype)
    x[0, 0] = 0  # an all-zero token takes the epsilon scale
    scale, zp = compute_dynamic_scales_and_zp(x, args, module=None)
    assert torch.equal(fake_quantize_activation(x, args), fake_quantize(x, scale, zp, args))


def test_fp8_block_checkpoints_hold_a_scale_per_128x128_block_and_per_token_group_activations(
    make_model, lambada, tmp_path
):
    _, result = compress_in_process(make_model(), "fp8-block", tmp_path / "out", lambada)
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        # k_proj has 64 rows: one ragged row block; down_proj has 256 inputs: two column blocks
        for name, shape in (("self_attn.k_proj", (1, 1)), ("mlp.down_proj", (1, 2)), ("mlp.up_proj", (2, 1))):
            weight = f.get_tensor(f"model.layers.0.{name}.weight")
            scale = f.get_tensor(f"model.layers.0.{name}.weight_scale")
            assert weight.dtype == torch.float8_e4m3fn and tuple(scale.shape) == shape, name
    group = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]["config_groups"]
    (scheme,) = group.values()
    assert scheme["weights"]["strategy"] == "block" and scheme["weights"]["block_structure"] == [128, 128]
    assert scheme["input_activations"]["strategy"] == "group" and scheme["input_activations"]["group_size"] == 128


def test_gptq_places_fp8_block_weights_module_by_module(make_model, lambada, tmp_path):
    # k_proj's 64 rows would straddle a 128-row block if q/k/v were solved stacked
    from transformers import AutoModelForCausalLM

    recipe = (
        "default_stage:\n  default_modifiers:\n    GPTQModifier: {targets: [Linear], ignore: [lm_head], "
        "scheme: FP8_BLOCK, block_size: 128, dampening_frac: 0.01, actorder: static}\n"
    )
    reference, result = compress_in_process(make_model(), recipe, tmp_path / "out", lambada)
    assert tuple(result.quantized["model.layers.0.self_attn.k_proj"].scale.shape) == (1, 1)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").eval()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, loaded(ids).logits)


INT8_STATIC = (
    "default_stage:\n  default_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n"
    "      config_groups: {g: {targets: [Linear], weights: {num_bits: 8, type: int, strategy: channel}, "
    "input_activations: {num_bits: 8, type: int, strategy: tensor, dynamic: false}}}\n"
)


@pytest.mark.parametrize("recipe", ["fp8-static", INT8_STATIC], ids=["fp8", "int8"])
def test_static_activation_scales_are_calibrated_stored_and_used_by_transformers(recipe, make_model, lambada, tmp_path):
    from transformers import AutoModelForCausalLM

    reference, result = compress_in_process(make_model(), recipe, tmp_path / "out", lambada)
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        for name, qw in result.quantized.items():
            stored = f.get_tensor(f"{name}.input_scale")
            assert stored.shape == (1,) and stored.item() > 0 and torch.equal(stored, qw.input_scale), name
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").eval()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, loaded(ids).logits)
    q = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]["config_groups"]
    (scheme,) = q.values()
    assert scheme["input_activations"]["dynamic"] is False and scheme["input_activations"]["strategy"] == "tensor"


@pytest.mark.parametrize("preset", ["nvfp4a16", "mxfp4a16"])
def test_fp4_checkpoints_pack_two_codes_a_byte_with_their_group_scales(preset, make_model, lambada, tmp_path):
    compress_in_process(make_model(), preset, tmp_path / "out", lambada)
    nv = preset == "nvfp4a16"
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        packed = f.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
        scale = f.get_tensor("model.layers.0.mlp.down_proj.weight_scale")
        assert packed.dtype == torch.uint8 and tuple(packed.shape) == (128, 256 // 2)
        assert scale.dtype == (torch.float8_e4m3fn if nv else torch.uint8)
        assert tuple(scale.shape) == (128, 256 // (16 if nv else 32))
        if nv:  # the Linears the engine fuses share one global scale, as vLLM requires
            for fused in (
                ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                ("mlp.gate_proj", "mlp.up_proj"),
            ):
                scales = {f.get_tensor(f"model.layers.1.{m}.weight_global_scale").item() for m in fused}
                assert len(scales) == 1, fused
        else:
            assert "model.layers.0.mlp.down_proj.weight_global_scale" not in f.keys()


def test_kv_cache_scales_are_the_largest_key_and_value_seen_over_448(make_model, lambada, tmp_path):
    from compress.calibration import CalibrationConfig, load_calibration
    from compress.pipeline import _observing_kv

    recipe = (
        "default_stage:\n  default_modifiers:\n    QuantizationModifier: {targets: [Linear], ignore: [lm_head], "
        "scheme: FP8_DYNAMIC, kv_cache_scheme: {num_bits: 8, type: float, strategy: tensor, dynamic: false, "
        "symmetric: true}}\n"
    )
    model_dir = make_model()
    reference, _ = compress_in_process(model_dir, recipe, tmp_path / "out", lambada)
    config = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    assert config["kv_cache_scheme"]["type"] == "float" and config["kv_cache_scheme"]["strategy"] == "tensor"
    # the keys (after the rotary embedding) and values the compressed model computes on the
    # calibration windows, observed in transformers' own forward pass
    from transformers import AutoTokenizer

    ids = load_calibration(
        AutoTokenizer.from_pretrained(model_dir), CalibrationConfig(str(lambada), 4, 64).resolved("cpu")
    )
    seen: dict = {}
    with torch.no_grad(), _observing_kv(reference.config, seen, True):
        reference(ids)
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        for i, attention in enumerate(layer.self_attn for layer in reference.model.layers):
            for name, largest in zip(("k_scale", "v_scale"), seen[attention]):
                stored = f.get_tensor(f"model.layers.{i}.self_attn.{name}")
                assert stored.shape == (1,) and stored.dtype == torch.bfloat16
                assert stored.float().item() * 448 == pytest.approx(largest.item(), rel=0.02), (i, name)
