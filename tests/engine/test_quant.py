"""Checkpoints written by compress run in the engine from their stored (packed, int8, FP8)
tensors and generate what transformers generates from the same checkpoint; schemes the
engine cannot run are refused with a clear error."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import LLM, SamplingParams, UnsupportedModelError
from engine.layers.linear import DenseLinearMethod
from engine.layers.quant import BlockScaledMMMethod, ScaledMMMethod, WNA16Method, is_two_of_four
from tests.engine.helpers import hf_greedy

GREEDY = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)


def _rtn(weights: str, activations: str = "null", ignore: tuple[str, ...] = ("lm_head",)) -> str:
    """A round-to-nearest recipe of one config group (the tiny widths take group 32)."""
    return (
        "default_stage:\n  default_modifiers:\n    QuantizationModifier:\n"
        f"      ignore: {list(ignore)}\n"
        f"      config_groups: {{group_0: {{targets: [Linear], weights: {{{weights}}}, input_activations: {activations}}}}}\n"
    ).replace("'", '"')


W4_ASYM = "num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 32"
W8_CHANNEL = "num_bits: 8, type: int, symmetric: true, strategy: channel"
A8_TOKEN = "{num_bits: 8, type: int, symmetric: true, strategy: token, dynamic: true}"
A8_STATIC = "{num_bits: 8, type: int, symmetric: true, strategy: tensor, dynamic: false}"


# round-to-nearest recipes need no calibration data; each writes the format of its preset
# (w4a16-asym and w8a8-int8 run GPTQ there, which only changes the values)
RECIPES = {
    "w4a16": "w4a16",
    "w4a16-asym": _rtn(W4_ASYM),
    "w8a16": "w8a16",
    "w8a8-int8": _rtn(W8_CHANNEL, A8_TOKEN),
    "fp8-dynamic": "fp8-dynamic",
    "fp8-block": "fp8-block",
    "nvfp4a16": "nvfp4a16",
    "mxfp4a16": "mxfp4a16",
    "2of4-magnitude": "2of4-magnitude",
}


# the families whose module layout differs in what compression must carry: Granite scales
# embeddings, block outputs, attention scores and logits around the same linears; Phi-3 stores
# q/k/v and gate/up fused; Gemma 2 / 3 put their MLP behind a pre-feedforward norm and a GeGLU,
# with windowed layers and soft-capped scores
FAMILIES = {
    "gemma2": {},
    "gemma3": {},
    "llama": {},
    "granite": {
        "embedding_multiplier": 12.0,
        "residual_multiplier": 0.22,
        "attention_multiplier": 0.1,
        "logits_scaling": 4.0,
    },
    "phi3": {},
}


@pytest.fixture(scope="session")
def compressed(make_checkpoint, tmp_path_factory):
    from compress import compress

    made: dict[tuple[str, str], Path] = {}

    def make(name: str, recipe: str | None = None, arch: str = "llama") -> Path:
        if (arch, name) not in made:
            out = tmp_path_factory.mktemp("quant") / f"{arch}-{name}"
            compress(make_checkpoint(arch, **FAMILIES[arch]), recipe or RECIPES[name], out, device="cpu")
            made[arch, name] = out
        return made[arch, name]

    return make


def load_transformers(path: Path):
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    # transformers reads packed asymmetric zero points only when it dequantizes at load time
    # (compressed-tensors 0.20); the other schemes load the default way, packed, and decompress
    config = (path / "config.json").read_text()
    asym = '"symmetric": false' in config
    if "fp4-pack-quantized" in config:
        # compressed-tensors 0.20 decodes FP4 weights to bf16 whatever the model's dtype (on the
        # first forward pass): decode them now and widen them, exactly, to the model's float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        model.hf_quantizer.compressor.decompress_model(model)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.data = module.weight.data.float()
    elif not asym:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    else:
        # that dequantization computes in the scales' dtype: bf16 scales would round every
        # weight to bf16, so it reads a copy whose scales are float32 (the very same values)
        with tempfile.TemporaryDirectory() as tmp:
            model = AutoModelForCausalLM.from_pretrained(
                float32_scales(path, Path(tmp)),
                dtype=torch.float32,
                quantization_config=CompressedTensorsConfig(dequantize=True),
            ).eval()
    model.generation_config.eos_token_id = None
    return model


def float32_scales(path: Path, out: Path) -> Path:
    for f in path.iterdir():
        if f.suffix == ".safetensors":
            tensors = {k: t.float() if k.endswith("_scale") else t for k, t in load_file(f).items()}
            save_file(tensors, out / f.name, metadata={"format": "pt"})
        elif f.is_file():
            shutil.copy(f, out / f.name)
    return out


def assert_greedy_matches(outputs, hf, prompts: list[list[int]], max_tokens: int, tie: float = 1e-3) -> list[str]:
    """Engine and transformers greedy tokens agree, except after a step where transformers'
    top-2 logits are closer than `tie` (then either token is a right answer). Returns those
    near-ties, described."""
    expected = hf_greedy(hf, prompts, max_tokens)
    ties = []
    for i, (out, ref) in enumerate(zip(outputs, expected)):
        if out.token_ids == ref:
            continue
        j = next(j for j, (a, b) in enumerate(zip(out.token_ids, ref)) if a != b)
        with torch.inference_mode():
            logits = hf(torch.tensor([prompts[i] + ref[:j]])).logits[0, -1].float()
        top = logits.topk(2)
        margin = (top.values[0] - top.values[1]).item()
        assert margin < tie and out.token_ids[j] in top.indices.tolist(), (
            f"prompt {i} ({len(prompts[i])} tokens) differs at generated token {j}: engine {out.token_ids[j]}, "
            f"transformers {ref[j]}, transformers' top-2 margin {margin:.3g}"
        )
        ties.append(f"prompt {i} token {j}: margin {margin:.2e}")
    return ties


def random_prompts(n: int = 8) -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, 128, (int(length),), generator=g).tolist() for length in torch.linspace(1, 60, n)]


@pytest.mark.parametrize("arch", list(FAMILIES))
@pytest.mark.parametrize("name", list(RECIPES))
def test_it_generates_what_transformers_generates_from_the_same_checkpoint(compressed, name, arch):
    path = compressed(name, arch=arch)
    # FP8 codes per group of 32 inputs turn the last-bit differences between a batched matmul
    # and transformers' one-row one into code flips that reach the tiny model's logits (a row
    # at a time, the engine's tokens are transformers'): one sequence at a time, as transformers
    llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64, max_num_seqs=1 if name == "fp8-block" else 256)
    prompts = random_prompts()
    outputs = llm.generate(prompts, GREEDY)
    assert_greedy_matches(outputs, load_transformers(path), prompts, GREEDY.max_tokens)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_it_quantizes_w8a8_inputs_in_the_norm_in_front(compressed, monkeypatch, arch):
    # the dense CPU plan, as CUDA layers do, takes its input quantized by the norm in front:
    # for Gemma the pre-feedforward norm, and down_proj quantizes its own (there is no GeGLU kernel)
    monkeypatch.setenv("HUB_CPU_QUANT", "dense")
    path = compressed("w8a8-int8", arch=arch)
    llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64)
    layer = llm.model.model.layers[0]
    mlp_norm = layer.pre_feedforward_layernorm if arch == "gemma3" else layer.post_attention_layernorm
    assert layer.input_layernorm.quant == mlp_norm.quant == torch.int8
    assert getattr(layer.mlp.act, "quant", None) == (None if arch == "gemma3" else torch.int8)
    prompts = random_prompts()
    assert_greedy_matches(llm.generate(prompts, GREEDY), load_transformers(path), prompts, GREEDY.max_tokens)


@pytest.mark.parametrize(
    "name, method, stored",
    [
        ("w4a16", WNA16Method, {"weight_packed": torch.int32}),
        ("w4a16-asym", WNA16Method, {"weight_packed": torch.int32, "weight_zero_point": torch.int8}),
        ("w8a16", WNA16Method, {"weight_packed": torch.int32}),
        ("w8a8-int8", ScaledMMMethod, {"weight": torch.int8}),
        ("fp8-dynamic", ScaledMMMethod, {"weight": torch.float8_e4m3fn}),
        ("fp8-block", BlockScaledMMMethod, {"weight": torch.float8_e4m3fn}),
    ],
)
def test_it_keeps_the_stored_tensors_instead_of_a_dense_weight(compressed, name, method, stored):
    llm = LLM(compressed(name), dtype="float32", device="cpu", num_kv_blocks=16)
    layer = llm.model.model.layers[0].mlp.gate_up_proj
    assert isinstance(layer.method, method)
    for param, dtype in stored.items():
        assert getattr(layer, param).dtype == dtype
    if method is WNA16Method:
        assert not hasattr(layer, "weight")
        bits = 4 if "w4" in name else 8
        assert layer.weight_packed.shape == (layer.out_features, layer.in_features * bits // 32)
    # the norms and the activation in front of W8A8 / FP8 layers quantize their output themselves,
    # except on the native CPU plan, whose kernel quantizes its own input
    decoder = llm.model.model.layers[0]
    # (FP8 block layers quantize their input per group of K, which no kernel in front does)
    expected = stored["weight"] if method is ScaledMMMethod and layer.cpu_kind != "native" else None
    assert decoder.input_layernorm.quant == decoder.post_attention_layernorm.quant == decoder.mlp.act.quant == expected


@pytest.mark.parametrize(
    "recipe, qdtype",
    [("fp8-static", torch.float8_e4m3fn), (_rtn(W8_CHANNEL, A8_STATIC), torch.int8)],
    ids=["fp8", "int8"],
)
def test_it_quantizes_activations_with_their_calibrated_static_scale(
    make_text_checkpoint, fixtures_dir, tmp_path, recipe, qdtype
):
    from compress import CalibrationConfig, compress

    lambada = fixtures_dir / "datasets" / "lambada_openai" / "test.jsonl"
    calibration = CalibrationConfig(str(lambada), 4, 64)
    compress(make_text_checkpoint("llama"), recipe, tmp_path / "out", calibration=calibration, device="cpu")
    llm = LLM(tmp_path / "out", dtype="float32", device="cpu", num_kv_blocks=64)
    decoder = llm.model.model.layers[0]
    stored = load_file(tmp_path / "out" / "model.safetensors")
    # q/k/v read one input, calibrated once: the fused layer's scale is each shard's
    assert decoder.self_attn.qkv_proj.input_scale.item() == stored["model.layers.0.self_attn.k_proj.input_scale"].item()
    assert decoder.self_attn.qkv_proj.weight.dtype == qdtype and decoder.self_attn.qkv_proj.cpu_kind != "native"
    # a norm in front quantizes per token, so it leaves a static layer's input to the layer
    assert decoder.input_layernorm.quant is None and decoder.mlp.act.quant is None
    prompts = random_prompts()
    assert_greedy_matches(llm.generate(prompts, GREEDY), load_transformers(tmp_path / "out"), prompts, 10)


def test_it_leaves_the_layers_a_config_ignores_dense(compressed):
    path = compressed("w4a16-ignore-down", _rtn(W4_ASYM, ignore=("lm_head", "re:.*down_proj$")))
    llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64)
    mlp = llm.model.model.layers[1].mlp
    assert isinstance(mlp.down_proj.method, DenseLinearMethod)
    assert isinstance(mlp.gate_up_proj.method, WNA16Method)
    # on a GPU, room is kept beside the KV cache for the largest packed weight expanded (float32 here)
    gate_up = mlp.gate_up_proj
    assert llm._dequant_scratch_bytes() == gate_up.out_features * gate_up.in_features * 4
    prompts = random_prompts(4)
    assert_greedy_matches(llm.generate(prompts, GREEDY), load_transformers(path), prompts, GREEDY.max_tokens)


def test_it_recognises_two_of_four_weights(compressed, make_checkpoint):
    from safetensors.torch import load_file

    pruned = load_file(compressed("2of4-magnitude") / "model.safetensors")
    dense = load_file(make_checkpoint("llama") / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    assert is_two_of_four(pruned[name]) and not is_two_of_four(dense[name])
    assert not is_two_of_four(torch.ones(4, 6))  # K not a multiple of four


def _with_config(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config["quantization_config"])
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _static_per_token_activations(q: dict) -> None:
    q["config_groups"]["group_0"]["input_activations"].update(dynamic=False)


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("fp8-dynamic", _static_per_token_activations, "static per tensor"),
        ("w4a16", lambda q: q.update(ignore=["lm_head", "re:.*k_proj$"]), "quantized differently"),
        ("w4a16", lambda q: q.update(ignore=[]), "quantized lm_head"),
        ("w4a16", lambda q: q.update(quant_method="gptq"), "quant_method 'gptq'"),
        ("w4a16", lambda q: q["config_groups"]["group_0"]["weights"].update(num_bits=3), "int3"),
        ("w4a16", lambda q: q["config_groups"]["group_0"]["weights"].update(actorder="group"), "weight_g_idx"),
        # an int8 cache, and FP8 with a scale per head: only static per-tensor FP8 is stored
        ("w4a16", lambda q: q.update(kv_cache_scheme={"num_bits": 8, "type": "int"}), "kv_cache_scheme with"),
        ("w4a16", lambda q: q.update(kv_cache_scheme={"type": "float", "strategy": "attn_head"}), "attn_head"),
    ],
    ids=[
        "static-per-token",
        "mixed-qkv",
        "lm-head",
        "gptq-format",
        "int3",
        "g-idx",
        "int8-kv-cache",
        "per-head-kv-cache",
    ],
)
def test_it_refuses_what_it_cannot_run_with_a_clear_error(compressed, tmp_path, name, edit, message):
    path = _with_config(compressed(name), tmp_path / "model", edit)
    with pytest.raises(UnsupportedModelError, match=message):
        LLM(path, dtype="float32", device="cpu", num_kv_blocks=16)
