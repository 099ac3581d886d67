"""LLM Compressor's own checkpoints on our engine: made by llm-compressor, run by `engine.LLM`,
compared with transformers on the same checkpoint.

llm-compressor 0.14.0.1 runs in its own virtual environment (`bench/compress_vs_llmcompressor.py`
makes it; deps.md "Set B"). It applies each of its preset schemes with `QuantizationModifier`
(`targets: Linear`, `ignore: [lm_head]`, nothing else set: what its examples do) to one model and
saves it compressed. The model: a Llama-family checkpoint with SmolLM2-135M's tokenizer and
vocabulary and widths that LLM Compressor's 128-wide groups and blocks divide (hidden 512,
MLP 1536, 4 layers), random weights written once by this script; SmolLM2's own 576-wide inputs
would give its group-128 and block presets partial groups, which vLLM and our engine refuse.
Static scales (FP8) and the KV-cache scheme are calibrated on LAMBADA windows.

Each checkpoint is then loaded here by the engine (CPU, float32) and by transformers, and the
engine's greedy tokens for 32 prompts are checked step by step against transformers' logits (as
tests/engine/test_quant_smollm2.py does): "equal" counts prompts where the engine took
transformers' argmax at every step; "largest gap" is how far below transformers' best logit an
engine token was. Schemes that quantize activations are compared again with activation
quantization off on both sides (float32 noise flips per-token codes; see that test). The
KV-cache checkpoint is compared with the engine's cache unquantized (transformers ignores the
stored k_scale / v_scale), and the engine's FP8 cache is checked to read those scales. A
checkpoint the engine refuses is reported with the refusal.

    .venv/bin/python bench/llmcompressor_checkpoints.py [--schemes W4A16,W8A8,...] [--work DIR] [--venv DIR]
"""

import argparse
import json
import os
import sys
import textwrap
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(ROOT)

from bench.compress_quality import LAMBADA, smollm2  # noqa: E402
from bench.compress_vs_llmcompressor import ensure_venv, run  # noqa: E402

SCHEMES = ["W4A16", "W8A16", "W8A8", "FP8_DYNAMIC", "FP8", "FP8_BLOCK", "NVFP4A16", "MXFP4A16", "FP8_KV"]

THEIRS = textwrap.dedent("""
    import json, sys, time
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir, calib, out, scheme = sys.argv[1:5]
    ids = torch.load(calib)
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    if scheme == "FP8_KV":  # FP8_DYNAMIC weights and activations, and an FP8 KV cache with calibrated scales
        kv = {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True}
        recipe = QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"], kv_cache_scheme=kv)
    else:
        recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head"])
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=ids.shape[1], num_calibration_samples=len(ids),
            shuffle_calibration_samples=False)
    model.save_pretrained(out, save_compressed=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    print(json.dumps({"seconds": time.perf_counter() - start}))
""")


def base_model(work: Path) -> Path:
    """The random Llama-family checkpoint (bf16) with SmolLM2's tokenizer, written once."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = work / "base"
    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(smollm2())
    config = LlamaConfig(
        hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
        vocab_size=len(tokenizer), max_position_embeddings=2048, tie_word_embeddings=True, initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def compare(path: Path) -> dict:
    """The engine's greedy tokens against transformers' logits after each of its prefixes; for
    schemes that quantize activations, also with activation quantization off on both sides (as
    tests/engine/test_quant_smollm2.py does: per-token codes turn float32 noise into logit steps)."""
    from transformers import AutoTokenizer

    import engine.loader
    import kernels
    from engine import LLM, SamplingParams, UnsupportedModelError
    from tests.engine.helpers import mixed_prompts
    from tests.engine.test_quant import load_transformers
    from tests.engine.test_quant_smollm2 import PROMPT_TOKENS, divergences, transformers_steps

    quantization = json.loads((path / "config.json").read_text()).get("quantization_config") or {}
    prompts = [p[:PROMPT_TOKENS] for p in mixed_prompts(AutoTokenizer.from_pretrained(path), 32)]
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    hf = load_transformers(path)

    def check(kv: str = "float32") -> dict:
        llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64, kv_cache_dtype=kv)
        outputs = [o.token_ids for o in llm.generate(prompts, params)]
        steps = transformers_steps(hf, prompts, outputs)
        gap = max((s.max(-1).values - s[range(len(o)), o]).max().item() for s, o in zip(steps, outputs))
        return {"equal": f"{32 - len(divergences(steps, outputs))}/32", "largest_gap": round(gap, 4)}

    try:
        result = {"engine": "runs", **check()}
    except UnsupportedModelError as e:
        return {"engine": f"refused: {e}"}
    if quantization.get("kv_cache_scheme"):
        # transformers ignores k_scale / v_scale (its load report lists them as unexpected) and
        # keeps K and V unquantized, so it is no reference for the FP8 cache: the comparison
        # above ran the engine's cache in float32 too; here, the FP8 cache ("auto" picks it for
        # this checkpoint) reads the stored scales
        from safetensors.torch import load_file

        stored = load_file(path / "model.safetensors")
        llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64)
        attentions = [layer.self_attn.attn for layer in llm.model.model.layers]
        result["fp8_kv_scales_read"] = all(
            a.k_scale == stored[f"model.layers.{i}.self_attn.k_scale"].float().item()
            and a.v_scale == stored[f"model.layers.{i}.self_attn.v_scale"].float().item()
            for i, a in enumerate(attentions)
        )
        result["fp8_kv_vs_unquantized_kv_transformers"] = check("fp8")
    if any((g.get("input_activations") for g in (quantization.get("config_groups") or {}).values())):
        saved = kernels.quantize_per_token, kernels.quantize_per_tensor, engine.loader.fuse_input_quantization
        kernels.quantize_per_token = lambda x, dtype: (x.float(), torch.ones(len(x), 1))
        kernels.quantize_per_tensor = lambda x, scale, dtype: (x.float(), torch.ones(1))
        engine.loader.fuse_input_quantization = lambda model: 0
        os.environ["HUB_CPU_QUANT"] = "dense"  # the native kernel quantizes inside itself
        for module in hf.modules():
            if getattr(module, "quantization_scheme", None) is not None:
                module.quantization_enabled = False
        try:
            result["activations_unquantized"] = check()
        finally:
            kernels.quantize_per_token, kernels.quantize_per_tensor, engine.loader.fuse_input_quantization = saved
            del os.environ["HUB_CPU_QUANT"]
    return result


def main() -> None:
    from transformers import AutoTokenizer

    from compress.calibration import CalibrationConfig, load_calibration

    p = argparse.ArgumentParser()
    p.add_argument("--schemes", default=",".join(SCHEMES))
    p.add_argument("--venv", type=Path, default=ROOT / "var" / "llmcompressor-venv")
    p.add_argument("--work", type=Path, default=ROOT / "var" / "llmcompressor-checkpoints")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    a = p.parse_args()
    theirs_python = ensure_venv(a.venv)
    a.work.mkdir(parents=True, exist_ok=True)
    base = base_model(a.work)
    calib = CalibrationConfig(str(LAMBADA), a.samples, a.seq_len).resolved("cpu")
    torch.save(load_calibration(AutoTokenizer.from_pretrained(base), calib), a.work / "calib.pt")
    results = {}
    for scheme in a.schemes.split(","):
        out = a.work / scheme
        try:
            if not (out / "config.json").exists():
                made = run(theirs_python, THEIRS, str(base), str(a.work / "calib.pt"), str(out), scheme, cwd=a.work,
                           threads=torch.get_num_threads())  # fmt: skip
                print(f"{scheme}: made by llm-compressor in {made['seconds']:.1f} s", flush=True)
            results[scheme] = compare(out)
        except Exception as e:
            traceback.print_exc()
            results[scheme] = {"error": f"{type(e).__name__}: {str(e)[-400:]}"}
        print(f"{scheme}: {results[scheme]}", flush=True)
    (a.work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
