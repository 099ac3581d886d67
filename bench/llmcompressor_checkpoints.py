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
engine token was. A checkpoint the engine refuses is reported with the refusal.

    .venv/bin/python bench/llmcompressor_checkpoints.py [--schemes W4A16,W8A8,...] [--work DIR] [--venv DIR]
"""

import argparse
import json
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
    """The engine's greedy tokens against transformers' logits after each of its prefixes."""
    from transformers import AutoTokenizer

    from engine import LLM, SamplingParams, UnsupportedModelError
    from tests.engine.helpers import mixed_prompts
    from tests.engine.test_quant import load_transformers
    from tests.engine.test_quant_smollm2 import PROMPT_TOKENS, divergences, transformers_steps

    kv = "fp8" if "kv_cache_scheme" in (path / "config.json").read_text() else "auto"
    try:
        llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64, kv_cache_dtype=kv)
    except UnsupportedModelError as e:
        return {"engine": f"refused: {e}"}
    prompts = [p[:PROMPT_TOKENS] for p in mixed_prompts(AutoTokenizer.from_pretrained(path), 32)]
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    outputs = [o.token_ids for o in llm.generate(prompts, params)]
    steps = transformers_steps(load_transformers(path), prompts, outputs)
    found = divergences(steps, outputs)
    gap = max((s.max(-1).values - s[range(len(o)), o]).max().item() for s, o in zip(steps, outputs))
    return {"engine": "runs", "kv_cache_dtype": kv, "equal": f"{32 - len(found)}/32", "largest_gap": round(gap, 4)}


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
