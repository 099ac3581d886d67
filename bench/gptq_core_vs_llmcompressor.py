"""Our GPTQ core and "mse" observer against llm-compressor's, on identical inputs.

For each seed: a random weight [384, 576] (bf16 values) and the Hessian of correlated random
inputs with a few outlier channels. GPTQ W4A16 (int4 symmetric, group 64, block 128, dampening
0.01, static activation order). Four results are compared by GPTQ loss, sum (w - q)^2 / d^2 / 2:
- ours: our observer's scales, then our GPTQ;
- llm-compressor's GPTQ (`quantize_weight`) on our scales, which isolates the GPTQ loop;
- llm-compressor's observer (`_grid_search_mse`) feeding its own GPTQ;
- how many group scales the two observers pick differently.
llm-compressor runs in its own venv (see bench/compress_vs_llmcompressor.py, which makes it).

    .venv/bin/python bench/gptq_core_vs_llmcompressor.py --venv /work/llmc-venv [--seeds 0 1 2 3]
"""

import argparse
import json
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(ROOT)

from bench.compress_vs_llmcompressor import ensure_venv, run  # noqa: E402

ROWS, COLS, TOKENS, GROUP = 384, 576, 8192, 64

THEIRS = textwrap.dedent("""
    import json, sys
    import torch
    from compressed_tensors.quantization import QuantizationArgs, QuantizationStrategy
    from compressed_tensors.quantization.utils import calculate_qparams
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
    from llmcompressor.observers.mse_quant import _grid_search_mse

    d = torch.load(sys.argv[1])
    w, h, group = d["w"], d["h"], int(sys.argv[2])
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=group,
                            observer="mse", actorder="static", scale_dtype=torch.bfloat16)
    tokens = args.model_copy(update={"strategy": QuantizationStrategy.TOKEN})
    # the observer sees the module's bf16 weight as (observations, rows, groups, group size)
    mn, mx = _grid_search_mse(w.bfloat16().unflatten(-1, (-1, group)).unsqueeze(0), args, tokens, 0.2, 5, 100.0, 2.4, 0.3)
    scale, _ = calculate_qparams(mn, mx, args)
    out = {"scales_differ": (scale.float() != d["scale"].float()).float().mean().item()}
    for name, s in (("gptq_on_our_scales", d["scale"]), ("theirs", scale)):
        s = s.to(torch.bfloat16)[None]
        _, loss, _ = quantize_weight(w[None].clone(), h[None].clone(), s, torch.zeros_like(s, dtype=torch.int8), None,
                                     args, 128, 0.01)
        out[name] = loss.item()
    print(json.dumps(out))
""")


def case(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(ROWS, COLS, generator=g) * 0.02).bfloat16().float()
    x = torch.randn(TOKENS, COLS, generator=g)
    x[:, :8] *= 30  # outlier channels, as real activations have
    x = x @ (torch.eye(COLS) + 0.05 * torch.randn(COLS, COLS, generator=g))
    return {"w": w, "h": 2 / TOKENS * x.T @ x}


def main() -> None:
    from compressed_tensors.quantization import QuantizationArgs

    from compress.gptq import gptq_quantize
    from compress.quant import compute_qparams

    p = argparse.ArgumentParser()
    p.add_argument("--venv", type=Path, default=ROOT / "var" / "llmcompressor-venv")
    p.add_argument("--work", type=Path, default=ROOT / "var" / "gptq-core")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    a = p.parse_args()
    theirs_python = ensure_venv(a.venv)
    a.work.mkdir(parents=True, exist_ok=True)
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=GROUP, observer="mse")
    rows = []
    for seed in a.seeds:
        d = case(seed)
        d["scale"], _ = compute_qparams(d["w"], args, torch.bfloat16)
        _, loss = gptq_quantize(
            d["w"], d["h"], args, torch.bfloat16, block_size=128, dampening_frac=0.01, actorder=True
        )
        torch.save(d, a.work / "case.pt")
        row = {
            "seed": seed,
            "ours": loss.sum().item(),
            **run(theirs_python, THEIRS, str(a.work / "case.pt"), str(GROUP), cwd=a.work, threads=1),
        }
        rows.append(row)
        print(f"seed {seed}: GPTQ loss ours {row['ours']:.4f}, their GPTQ on our scales {row['gptq_on_our_scales']:.4f}, "
              f"theirs {row['theirs']:.4f}; {row['scales_differ']:.0%} of group scales differ", flush=True)  # fmt: skip
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
