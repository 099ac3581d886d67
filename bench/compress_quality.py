"""WikiText-2 perplexity of SmolLM2-135M-Instruct, base vs every compression preset.

Perplexity: the first 32,768 tokens (`--tokens`) of the WikiText-2 raw test file, windows of
1,024 tokens each scored independently (token 0 of a window is context only), exp of the mean
token NLL, in the checkpoint's dtype (`--dtype`) on the CPU. Compressed checkpoints are loaded by transformers (which
decompresses them with compressed-tensors and quantizes activations where the scheme says so);
asymmetric ones, which transformers cannot load with compressed-tensors 0.20, are decoded with
`compress.save.load_dequantized`. Calibration: LAMBADA (OpenAI) text, disjoint from WikiText.

    .venv/bin/python bench/compress_quality.py [--presets w4a16 w4a16-gptq ...] [--samples 64 --seq-len 512]
        [--tokens 32768] [--dtype auto|float32]
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(ROOT)
FIXTURES = Path(os.environ.get("HUB_FIXTURES", ROOT / "tests" / "fixtures"))
WIKITEXT = FIXTURES / "datasets" / "wikitext2_raw" / "test.txt"
LAMBADA = FIXTURES / "datasets" / "lambada_openai" / "test.jsonl"


def smollm2() -> Path:
    """SmolLM2-135M-Instruct, built once per machine by tests/smollm2.py."""
    from tests.smollm2 import build

    return build()


def load_model(path: Path, dtype: str = "auto"):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads((path / "config.json").read_text())
    quantization = config.get("quantization_config", {})
    asym = any(
        not (g.get("weights") or {}).get("symmetric", True) for g in quantization.get("config_groups", {}).values()
    )
    if "fp4-pack-quantized" in json.dumps(quantization) and dtype not in ("auto", "bfloat16"):
        # compressed-tensors 0.20 decodes FP4 weights to bf16 whatever the model's dtype (on the
        # first forward pass): decode them now and widen them, exactly, to the model's dtype
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
        model.hf_quantizer.compressor.decompress_model(model)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.data = module.weight.data.to(getattr(torch, dtype))
        return model
    if not asym:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
        ).eval()
    from compress.save import load_dequantized

    cfg = AutoConfig.from_pretrained(path)
    del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=cfg.dtype if dtype == "auto" else getattr(torch, dtype))
    missing, unexpected = model.load_state_dict(load_dequantized(path), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model.eval()


@torch.no_grad()
def perplexity(path: Path, tokens: int = 32768, window: int = 1024, dtype: str = "auto") -> float:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(path)(WIKITEXT.read_text()).input_ids[:tokens]
    model = load_model(path, dtype)
    nll, count = 0.0, 0
    for start in range(0, len(ids) - window + 1, window):
        x = torch.tensor([ids[start : start + window]])
        logits = model(x).logits[0, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
        count += window - 1
    return math.exp(nll / count)


def main() -> None:
    from compress import PRESETS, CalibrationConfig, compress

    p = argparse.ArgumentParser()
    p.add_argument("--presets", nargs="*", default=list(PRESETS))
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--work", type=Path, default=ROOT / "var" / "compress-quality")
    p.add_argument("--tokens", type=int, default=32768, help="WikiText-2 tokens scored, in windows of 1,024")
    p.add_argument(
        "--dtype",
        default="auto",
        help="transformers' compute dtype: auto (the checkpoint's) or e.g. float32, "
        "several times faster than bfloat16 on a CPU without bf16 math",
    )
    a = p.parse_args()
    base = smollm2()
    a.work.mkdir(parents=True, exist_ok=True)
    calib = CalibrationConfig(str(LAMBADA), a.samples, a.seq_len)
    rows = [(f"base ({a.dtype})", perplexity(base, a.tokens, dtype=a.dtype), None, "")]
    print(f"base: {rows[0][1]:.3f}", flush=True)
    for preset in a.presets:
        out = a.work / preset
        if not out.exists():
            report = compress(base, preset, out, calibration=calib)
            seconds, scheme = report.seconds["total"], report.scheme
        else:
            r = json.loads((out / "compression_report.json").read_text())
            seconds, scheme = r["seconds"]["total"], r["scheme"]
        rows.append((preset, perplexity(out, a.tokens, dtype=a.dtype), seconds, scheme))
        print(f"{preset}: {rows[-1][1]:.3f} ({scheme}, {seconds:.0f} s)", flush=True)
    print("\n| recipe | scheme | WikiText-2 ppl | vs base | compress time (s) |\n|---|---|---:|---:|---:|")
    for name, ppl, seconds, scheme in rows:
        rel = f"{100 * (ppl / rows[0][1] - 1):+.1f}%" if seconds is not None else ""
        print(f"| {name} | {scheme} | {ppl:.2f} | {rel} | {'' if seconds is None else f'{seconds:.0f}'} |")
    (a.work / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
