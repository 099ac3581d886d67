"""Quantized GEMM benchmark: our kernels against bf16 cuBLAS on Llama-3.1-8B layer
shapes, in one process on one CUDA device.

    python -m bench.quant_gemm [--json PATH] [--quick]

- W4A16 (int4, symmetric, group 128) at batch 1, 4, 8, 16, 32, 64: each path of
  `kernels.gemm_wna16` (multiply-add gemv, tensor-core strided and interleaved, dequantize +
  cuBLAS) at a small sweep of tile shapes and split-K counts (one shape each with --quick), its
  best and the engine's heuristic beside bf16 `F.linear`; asymmetric int4 and W8A16 at the
  heuristic;
- W8A8 int8 and FP8 at batch 256, 1024, 2048: the GEMM alone (Triton tiles; `torch._int_mm` plus
  a scaling pass; `torch._scaled_mm` row-wise for FP8) and with the per-token quantization of
  the bf16 activations in front, as the engine runs it;
- FP8 block weights (`block_scaled_mm`: a scale per 128 x 128 block, activations per token and
  128 inputs) against the per-channel FP8 dispatch on the same codes and bf16, batch 1 to 2048;
- 2:4 sparse (PyTorch semi-structured, cuSPARSELt) against dense bf16 at batch 1 to 2048.
Times are per call inside a CUDA graph whose calls cycle through enough weight copies to spill
the L2 cache (bench.kernel_speed.graph_ms), so every call reads its weight from DRAM. Each kernel's
relative error against its reference twin is recorded beside its time.
"""

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
import triton

from bench.kernel_speed import eager_ms, graph_ms
from kernels import reference
from kernels.gemm_scaled import block_scaled_mm, quantize_per_token, scaled_mm, scaled_mm_fastest
from kernels.gemm_wna16 import Config, default_config, split_for, wna16_gemm

SHAPES = {"qkv_proj": (6144, 4096), "o_proj": (4096, 4096), "gate_up_proj": (28672, 4096), "down_proj": (4096, 14336)}
SPILL_BYTES = 512 << 20
DTYPE = torch.bfloat16


def copies_for(nbytes: int) -> int:
    return max(2, min(64, math.ceil(SPILL_BYTES / nbytes)))


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def w4_configs(m: int, n: int, k: int, dev: torch.device, quick: bool) -> dict[str, list[Config]]:
    """Launch shapes to try per path; quick: one each. The multiply-add kernel is tried up to
    16 rows, the tensor-core one up to 64, dequantize + cuBLAS everywhere."""
    paths: dict[str, list[Config]] = {"dequant": [Config("dequant", 1, 64, 128)]}
    if m <= 16:
        bm = triton.next_power_of_2(m)
        shrink = max(1, bm // 2)  # the [rows, outputs, K] accumulators live in registers
        shapes = [(64, 64, 4, 3, 8), (128, 64, 4, 3, 8), (64, 128, 4, 3, 8), (32, 64, 2, 3, 8), (64, 64, 4, 2, 16)]
        paths["gemv"] = [
            Config("gemv", bm, bn // shrink, bk, split_for(m, n, k, bm, bn // shrink, bk, dev, per_sm, 2), warps, stages)
            for bn, bk, warps, stages, per_sm in shapes[: 1 if quick else None]
        ]  # fmt: skip
    if m <= 64:
        # 64-row blocks go to Hopper's warpgroup MMA; 16 and 32 stay on the register MMA
        shapes = (
            [(16, 128, 4, 4), (16, 64, 4, 4), (16, 128, 4, 3), (16, 256, 8, 3)]
            if m <= 16
            else [(32, 64, 4, 4), (32, 128, 4, 4), (64, 64, 4, 4), (64, 128, 8, 3)]
        )
        # the interleaved kernel reads x in K order and converts each tile once: 4 barriers a
        # K tile where the strided one has 20 (bench/kernel_sass.py), for ~16% more instructions
        for kernel in ("strided", "interleaved"):
            paths[kernel] = []
            for bm, bn, warps, stages in shapes[: 1 if quick else None]:
                split = split_for(m, n, k, bm, bn, 128, dev)
                paths[kernel] += [Config(kernel, bm, bn, 128, sp, warps, stages) for sp in sorted({split, 2 * split})]
    return paths


def bench_wna16(batches: list[int], dev: torch.device, quick: bool) -> list[dict]:
    rows = []
    for name, (n, k) in SHAPES.items():
        dense = [torch.randn(n, k, device=dev, dtype=DTYPE) * 0.02 for _ in range(copies_for(n * k * 2))]
        packed = [torch.randint(-(2**31), 2**31 - 1, (n, k // 8), dtype=torch.int32, device=dev)
                  for _ in range(copies_for(n * k // 2))]  # fmt: skip
        scales = [torch.rand(n, k // 128, device=dev, dtype=DTYPE) * 0.01 for _ in packed]
        zeros = [torch.randint(-8, 8, (n, k // 128), dtype=torch.int8, device=dev) for _ in packed]
        packed8 = [torch.randint(-(2**31), 2**31 - 1, (n, k // 4), dtype=torch.int32, device=dev)
                   for _ in range(copies_for(n * k))]  # fmt: skip
        for m in batches:
            x = torch.randn(m, k, device=dev, dtype=DTYPE)
            base = graph_ms([lambda w=w: F.linear(x, w) for w in dense])
            heuristic = default_config(m, n, k, 128, 4, dev)
            paths = {}  # path -> {config: ms}
            for path, configs in w4_configs(m, n, k, dev, quick).items():
                for cfg in configs:
                    ms = timed(
                        [
                            lambda p=p, s=s, cfg=cfg: wna16_gemm(x, p, s, None, 4, 128, cfg)
                            for p, s in zip(packed, scales)
                        ]
                    )
                    if ms is not None:
                        paths.setdefault(path, {})[str(cfg)] = ms
            heur_ms = graph_ms([lambda p=p, s=s: wna16_gemm(x, p, s, None, 4, 128) for p, s in zip(packed, scales)])
            best = {path: min(times.values()) for path, times in paths.items()}
            err = rel_err(wna16_gemm(x, packed[0], scales[0], None, 4, 128),
                          reference.wna16_gemm(x, packed[0], scales[0], None, 4, 128))  # fmt: skip
            asym = graph_ms(
                [lambda p=p, s=s, z=z: wna16_gemm(x, p, s, z, 4, 128) for p, s, z in zip(packed, scales, zeros)]
            )
            w8 = graph_ms([lambda p=p, s=s: wna16_gemm(x, p, s, None, 8, 128) for p, s in zip(packed8, scales)])
            row = {
                "shape": name, "n": n, "k": k, "batch": m, "bf16_ms": base,
                "heuristic": str(heuristic), "w4a16_heuristic_ms": heur_ms, "speedup_heuristic": base / heur_ms,
                "best_per_path_ms": best, "speedup_per_path": {path: base / ms for path, ms in best.items()},
                "w4a16_asym_ms": asym, "w8a16_ms": w8, "rel_err": err, "sweep": paths,
            }  # fmt: skip
            rows.append(row)
            per_path = "  ".join(f"{path} {ms * 1e3:7.1f} ({base / ms:.2f}x)" for path, ms in best.items())
            print(f"W4A16 {name:13s} m={m:3d}  bf16 {base*1e3:7.1f} us  heuristic {heuristic.kernel} {heur_ms*1e3:7.1f} us "
                  f"({base/heur_ms:.2f}x)  best per path: {per_path}  asym {asym*1e3:6.1f}  w8a16 {w8*1e3:6.1f}  "
                  f"err {err:.1e}", flush=True)  # fmt: skip
        del dense, packed, scales, zeros, packed8
    return rows


SCALED_BLOCKS = [((128, 128, 128), 8, 3), ((128, 128, 128), 8, 4), ((128, 256, 128), 8, 3), ((64, 128, 128), 4, 4)]


def bench_scaled(batches: list[int], dev: torch.device, quick: bool) -> list[dict]:
    rows = []
    for name, (n, k) in SHAPES.items():
        dense = [torch.randn(n, k, device=dev, dtype=DTYPE) * 0.02 for _ in range(copies_for(n * k * 2))]
        for qdtype in (torch.int8, torch.float8_e4m3fn):
            weights = [quantize_per_token(torch.randn(n, k, device=dev, dtype=DTYPE), qdtype)
                       for _ in range(copies_for(n * k))]  # fmt: skip
            label = "int8" if qdtype == torch.int8 else "fp8"
            for m in batches:
                x = torch.randn(m, k, device=dev, dtype=DTYPE)
                a, sa = quantize_per_token(x, qdtype)
                base = graph_ms([lambda w=w: F.linear(x, w) for w in dense])
                triton_ms = {}
                for block, warps, stages in SCALED_BLOCKS[:1] if quick else SCALED_BLOCKS:
                    try:
                        triton_ms[f"{block} w{warps} s{stages}"] = graph_ms(
                            [
                                lambda b=b, sb=sb: scaled_mm(a, b, sa, sb, DTYPE, None, block, warps, stages)
                                for b, sb in weights
                            ]
                        )
                    except Exception as e:
                        print(f"  {label} {name} m={m} {block}: {type(e).__name__} {str(e)[:80]}", file=sys.stderr)
                best = min(triton_ms, key=triton_ms.get)
                row = {"scheme": label, "shape": name, "n": n, "k": k, "batch": m, "bf16_ms": base,
                       "triton_best_ms": triton_ms[best], "triton_best": best, "triton_sweep": triton_ms}  # fmt: skip
                if qdtype == torch.int8 and not quick:
                    row["int_mm_ms"] = timed(
                        [
                            lambda b=b, sb=sb: (torch._int_mm(a, b.t()).float() * sa * sb.t()).to(DTYPE)
                            for b, sb in weights
                        ]
                    )
                row["dispatch_ms"] = graph_ms(
                    [lambda b=b, sb=sb: scaled_mm_fastest(a, b, sa, sb, DTYPE) for b, sb in weights]
                )
                row["quant_ms"] = graph_ms([lambda: quantize_per_token(x, qdtype)])
                row["with_quant_ms"] = graph_ms(
                    [lambda b=b, sb=sb: _quant_then_mm(x, b, sb, qdtype) for b, sb in weights]
                )
                row["speedup_dispatch"] = base / row["dispatch_ms"]
                row["speedup_best_triton"] = base / triton_ms[best]
                row["speedup_with_quant"] = base / row["with_quant_ms"]
                row["rel_err"] = rel_err(scaled_mm_fastest(a, weights[0][0], sa, weights[0][1], DTYPE),
                                         reference.scaled_mm(a, weights[0][0], sa, weights[0][1], DTYPE))  # fmt: skip
                rows.append(row)
                extra = f"int_mm {row['int_mm_ms'] * 1e3:7.1f}" if row.get("int_mm_ms") else ""
                print(
                    f"{label:4s} {name:13s} m={m:4d}  bf16 {base * 1e3:7.1f} us  triton {triton_ms[best] * 1e3:7.1f} ({best})  "
                    f"{extra}  dispatch {row['dispatch_ms'] * 1e3:7.1f}  +quant {row['with_quant_ms'] * 1e3:7.1f} "
                    f"-> {row['speedup_dispatch']:.2f}x (triton best {row['speedup_best_triton']:.2f}x) / {row['speedup_with_quant']:.2f}x "
                    f"with quant  err {row['rel_err']:.1e}",
                    flush=True,
                )
            del weights
        del dense
    return rows


def bench_block(batches: list[int], dev: torch.device) -> list[dict]:
    """FP8 block weights (a scale per 128 x 128 block, activations per token and 128 inputs)
    against the per-channel FP8 dispatch on the same codes, and bf16."""
    rows = []
    for name, (n, k) in SHAPES.items():
        dense = [torch.randn(n, k, device=dev, dtype=DTYPE) * 0.02 for _ in range(copies_for(n * k * 2))]
        weights = []
        for _ in range(copies_for(n * k)):
            b, sb = quantize_per_token(torch.randn(n, k, device=dev, dtype=DTYPE).reshape(-1, 128), torch.float8_e4m3fn)
            weights.append((b.view(n, k), sb.view(n, k // 128), torch.ones(n, 1, device=dev)))
        for m in batches:
            x = torch.randn(m, k, device=dev, dtype=DTYPE)
            a, sa = quantize_per_token(x.reshape(-1, 128), torch.float8_e4m3fn)
            a, sa = a.view(m, k), sa.view(m, k // 128)
            a_tok, sa_tok = quantize_per_token(x, torch.float8_e4m3fn)
            base = graph_ms([lambda w=w: F.linear(x, w) for w in dense])
            block = graph_ms([lambda b=b, sb=sb: block_scaled_mm(a, b, sa, sb, DTYPE) for b, sb, _ in weights])
            channel = graph_ms(
                [lambda b=b, one=one: scaled_mm_fastest(a_tok, b, sa_tok, one, DTYPE) for b, _, one in weights]
            )
            b0, sb0, _ = weights[0]
            row = {"shape": name, "n": n, "k": k, "batch": m, "bf16_ms": base, "block_ms": block,
                   "per_channel_fp8_ms": channel, "speedup_block": base / block, "block_over_channel": block / channel,
                   "rel_err": rel_err(block_scaled_mm(a, b0, sa, sb0, DTYPE),
                                      reference.block_scaled_mm(a, b0, sa, sb0, DTYPE))}  # fmt: skip
            rows.append(row)
            print(
                f"fp8-block {name:13s} m={m:4d}  bf16 {base * 1e3:7.1f} us  block {block * 1e3:7.1f}  per-channel "
                f"{channel * 1e3:7.1f} -> {row['speedup_block']:.2f}x of bf16, {row['block_over_channel']:.2f}x the "
                f"per-channel time  err {row['rel_err']:.1e}",
                flush=True,
            )
        del weights, dense
    return rows


def timed(calls: list) -> float | None:
    try:
        return graph_ms(calls)
    except Exception as e:
        print(f"  {type(e).__name__}: {str(e)[:100]}", file=sys.stderr)
        return None


def _quant_then_mm(x: torch.Tensor, b: torch.Tensor, sb: torch.Tensor, qdtype: torch.dtype) -> torch.Tensor:
    a, sa = quantize_per_token(x, qdtype)
    return scaled_mm_fastest(a, b, sa, sb, DTYPE)


def bench_sparse(batches: list[int], dev: torch.device) -> list[dict]:
    from torch.sparse import to_sparse_semi_structured

    rows = []
    for name, (n, k) in SHAPES.items():
        dense, sparse = [], []
        for _ in range(copies_for(n * k * 2)):
            w = torch.randn(n, k, device=dev, dtype=DTYPE) * 0.02
            keep = w.abs().unflatten(1, (-1, 4)).topk(2, dim=-1).indices
            w = (w.unflatten(1, (-1, 4)) * torch.zeros_like(w.unflatten(1, (-1, 4))).scatter_(-1, keep, 1)).flatten(1)
            dense.append(w)
            sparse.append(to_sparse_semi_structured(w))
        for m in batches:
            x = torch.randn(m, k, device=dev, dtype=DTYPE)
            base = graph_ms([lambda w=w: F.linear(x, w) for w in dense])
            try:
                ms, how = graph_ms([lambda w=w: F.linear(x, w) for w in sparse]), "graph"
            except Exception as e:
                print(f"  2:4 {name} m={m}: not capturable ({type(e).__name__}); timed eagerly", file=sys.stderr)
                ms, how = eager_ms([lambda w=w: F.linear(x, w) for w in sparse]), "eager"
            err = rel_err(F.linear(x, sparse[0]), F.linear(x.float(), dense[0].float()))
            rows.append({"shape": name, "n": n, "k": k, "batch": m, "bf16_ms": base, "sparse_ms": ms, "timed": how,
                         "speedup": base / ms, "rel_err": err})  # fmt: skip
            print(
                f"2:4  {name:13s} m={m:4d}  bf16 {base * 1e3:7.1f} us  sparse {ms * 1e3:7.1f} us ({how}) "
                f"-> {base / ms:.2f}x  err {err:.1e}",
                flush=True,
            )
        del dense, sparse
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--quick", action="store_true", help="heuristics only, no sweeps")
    parser.add_argument("--only", choices=["wna16", "scaled", "block", "sparse"], action="append")
    args = parser.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(dev)
    result = {
        "device": props.name,
        "sms": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    parts = args.only or ["wna16", "scaled", "block", "sparse"]
    try:
        if "wna16" in parts:
            result["wna16"] = bench_wna16([1, 4, 8, 16, 32, 64], dev, args.quick)
        if "scaled" in parts:
            result["scaled"] = bench_scaled([256, 1024, 2048], dev, args.quick)
        if "block" in parts:
            result["block"] = bench_block([1, 16, 256, 2048], dev)
        if "sparse" in parts:
            result["sparse"] = bench_sparse([1, 16, 256, 2048], dev)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
