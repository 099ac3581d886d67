"""The FP8 KV cache (`LLM(kv_cache_dtype="fp8")`): K and V stored as float8_e4m3fn with a scale
per layer, from the checkpoint when it has them; lossy, so held to a stated tolerance of the
full-precision cache; and 2x (bf16) or 4x (fp32) the tokens in the same memory."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import LLM, SamplingParams
from engine.bench import measure
from engine.profiles import Profile

# measured on this random model (32 prompts of 5 to 60 tokens): token log-probs differ by at most
# 0.107 (mean 0.027); 26 of 32 greedy continuations of 4 tokens are the same
MAX_LOGPROB_DIFF = 0.25
MEAN_LOGPROB_DIFF = 0.05
MIN_GREEDY_AGREEMENT = 22
KV_SCHEME = {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True}


@pytest.fixture(scope="module")
def tiny(make_checkpoint) -> Path:
    # weights of 0.1 (not the usual 0.3): at 0.3 this 2-layer model is chaotic enough that any
    # rounding of K/V, not only FP8's, changes most greedy continuations
    return make_checkpoint("llama", initializer_range=0.1)


def _prompts(n: int = 32) -> list[list[int]]:
    rng = random.Random(0)
    return [[rng.randrange(128) for _ in range(rng.randint(5, 60))] for _ in range(n)]


def _logprob_diffs(a: LLM, b: LLM) -> list[float]:
    requests = [(p[: len(p) // 2], p[len(p) // 2 :]) for p in _prompts()]
    for llm in (a, b):  # scores move in the last bits with what the prefix cache holds
        llm.reset_prefix_cache()
    return [
        abs(x - y)
        for ra, rb in zip(a.score(requests), b.score(requests))
        for x, y in zip(ra.token_logprobs, rb.token_logprobs)
    ]


def _with_kv_scales(src: Path, dst: Path, scales: dict[str, torch.Tensor]) -> Path:
    """`src` plus per-layer tensors `model.layers.N.self_attn.<name>` and a kv_cache_scheme."""
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    for i in range(2):
        weights.update({f"model.layers.{i}.self_attn.{name}": t.clone() for name, t in scales.items()})
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((dst / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "config_groups": {},
        "kv_cache_scheme": KV_SCHEME,
    }
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_it_scores_and_generates_close_to_the_full_precision_cache(tiny):
    full = LLM(tiny, device="cpu", num_kv_blocks=128)
    fp8 = LLM(tiny, device="cpu", num_kv_blocks=128, kv_cache_dtype="fp8")
    assert full.runner.kv_cache.dtype == torch.float32 and fp8.runner.kv_cache.dtype == torch.float8_e4m3fn
    diffs = _logprob_diffs(full, fp8)
    assert 0 < max(diffs) <= MAX_LOGPROB_DIFF and sum(diffs) / len(diffs) <= MEAN_LOGPROB_DIFF
    greedy = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
    same = sum(
        a.token_ids == b.token_ids for a, b in zip(full.generate(_prompts(), greedy), fp8.generate(_prompts(), greedy))
    )
    assert same >= MIN_GREEDY_AGREEMENT


@pytest.mark.parametrize("k_name, v_name", [("k_scale", "v_scale"), ("k_proj.output_scale", "v_proj.output_scale")])
def test_it_quantizes_with_the_checkpoints_scales(tiny, tmp_path, k_name, v_name):
    full = LLM(tiny, device="cpu", num_kv_blocks=128)
    # K and V reach about 3.3 here: 0.01 covers them (448 * 0.01), 0.001 clips them to 0.448
    fitting = _with_kv_scales(tiny, tmp_path / "fit", {k_name: torch.tensor([0.01]), v_name: torch.tensor([0.02])})
    clipping = _with_kv_scales(tiny, tmp_path / "clip", {k_name: torch.tensor([1e-3]), v_name: torch.tensor([1e-3])})
    fp8 = LLM(fitting, device="cpu", num_kv_blocks=128, kv_cache_dtype="fp8")
    assert [(a.k_scale, a.v_scale) for a in fp8.model.attention_layers()] == [pytest.approx((0.01, 0.02))] * 2
    diffs = _logprob_diffs(full, fp8)
    assert max(diffs) <= MAX_LOGPROB_DIFF and sum(diffs) / len(diffs) <= MEAN_LOGPROB_DIFF
    clipped = _logprob_diffs(full, LLM(clipping, device="cpu", num_kv_blocks=128, kv_cache_dtype="fp8"))
    assert sum(clipped) / len(clipped) > 10 * MEAN_LOGPROB_DIFF
    # a cache of the compute dtype has no use for them; "auto" takes the checkpoint's FP8
    unquantized = LLM(clipping, device="cpu", num_kv_blocks=128, kv_cache_dtype="float32")
    assert _logprob_diffs(full, unquantized) == [0.0] * len(diffs)
    assert LLM(fitting, device="cpu", num_kv_blocks=16).runner.kv_cache.dtype == torch.float8_e4m3fn


@pytest.mark.parametrize(
    "scales, message",
    [
        ({"k_scale": torch.tensor([0.0])}, "not a positive finite number"),
        ({"k_scale": torch.tensor([-0.5])}, "not a positive finite number"),
        ({"v_scale": torch.tensor([float("nan")])}, "not a positive finite number"),
        ({"v_scale": torch.tensor([float("inf")])}, "not a positive finite number"),
        ({"k_scale": torch.ones(2, 1, 1)}, "only one per tensor"),
        ({"k_zero_point": torch.tensor([3], dtype=torch.int8)}, "asymmetric"),
    ],
    ids=["zero", "negative", "nan", "inf", "per-head", "zero-point"],
)
def test_it_refuses_kv_scales_it_cannot_use(tiny, tmp_path, scales, message):
    path = _with_kv_scales(tiny, tmp_path / "model", scales)
    with pytest.raises(ValueError, match=message):
        LLM(path, device="cpu", num_kv_blocks=16, kv_cache_dtype="fp8")


@pytest.mark.parametrize("dtype, factor", [("float32", 4), ("bfloat16", 2)])
def test_it_holds_more_tokens_in_the_same_memory(tiny, dtype, factor):
    memory = 1 << 20
    full = LLM(tiny, dtype=dtype, device="cpu", kv_cache_memory=memory)
    fp8 = LLM(tiny, dtype=dtype, device="cpu", kv_cache_memory=memory, kv_cache_dtype="fp8")
    assert fp8.num_kv_blocks == factor * full.num_kv_blocks
    assert fp8.kv_capacity_tokens == factor * full.kv_capacity_tokens
    cache = fp8.runner.kv_cache
    assert cache.dtype == torch.float8_e4m3fn and cache.numel() * cache.element_size() <= memory


@pytest.mark.parametrize("name", ["int8", "fp8_e5m2", "bf16", ""])
def test_it_refuses_an_unknown_kv_cache_dtype(tiny, name):
    with pytest.raises(ValueError, match=f"kv_cache_dtype '{name}' is not one of auto, fp8"):
        LLM(tiny, device="cpu", num_kv_blocks=16, kv_cache_dtype=name)


def test_it_records_the_kv_cache_dtype_with_a_benchmark(stories260k):
    profile = Profile("tiny", "1", "test", input_len=8, output_len=2, num_requests=2)
    m = measure(stories260k, profile, device="cpu", kv_cache_memory=1 << 20, kv_cache_dtype="fp8")
    assert m.runnable and m.settings["kv_cache_dtype"] == "float8_e4m3fn"
    assert (
        m.metrics["kv_capacity_tokens"]
        == LLM(stories260k, device="cpu", kv_cache_memory=1 << 20).kv_capacity_tokens * 4
    )


def test_it_runs_the_scales_compress_calibrates(make_text_checkpoint, fixtures_dir, tmp_path):
    from compress import CalibrationConfig, compress

    recipe = (
        "default_stage:\n  default_modifiers:\n    QuantizationModifier: {targets: [Linear], ignore: [lm_head], "
        f"scheme: FP8_DYNAMIC, kv_cache_scheme: {json.dumps(KV_SCHEME)}}}\n"
    )
    lambada = fixtures_dir / "datasets" / "lambada_openai" / "test.jsonl"
    model = make_text_checkpoint("llama", initializer_range=0.1)
    compress(model, recipe, tmp_path / "out", calibration=CalibrationConfig(str(lambada), 4, 64), device="cpu")
    stored = load_file(tmp_path / "out" / "model.safetensors")
    fp8 = LLM(tmp_path / "out", device="cpu", num_kv_blocks=128, kv_cache_dtype="fp8")
    for i, layer in enumerate(fp8.model.model.layers):
        assert layer.self_attn.attn.k_scale == stored[f"model.layers.{i}.self_attn.k_scale"].float().item() != 1.0
        assert layer.self_attn.attn.v_scale == stored[f"model.layers.{i}.self_attn.v_scale"].float().item() != 1.0
    # measured on this FP8_DYNAMIC model: log-probs differ by at most 0.30 (mean 0.052), as with
    # scales of 1.0 (0.24, 0.053): FP8's relative precision is the same at any scale; the
    # calibrated scales keep keys and values past 448 from clipping
    full = LLM(tmp_path / "out", device="cpu", num_kv_blocks=128, kv_cache_dtype="float32")
    diffs = _logprob_diffs(full, fp8)
    assert 0 < max(diffs) <= 0.4 and sum(diffs) / len(diffs) <= 0.07
    # the checkpoint declares its cache FP8: "auto" follows it, as vLLM does
    assert LLM(tmp_path / "out", device="cpu", num_kv_blocks=16).runner.kv_cache.dtype == torch.float8_e4m3fn
