"""CPU quantized Linear paths against the dense float32 F.linear, on one decoder layer's Linear
shapes (qkv, o, gate/up, down) of SmolLM2-135M and of a 1B Llama.

    .venv/bin/python bench/cpu_quant.py [--models smollm2-135m,llama-1b] [--batches 1,8,32] [--rounds 5] [--threads 2]
    .venv/bin/python bench/cpu_quant.py --e2e BASE_DIR CKPT_DIR... [--e2e-batches 1,8] [--rounds 5]

In one process, with torch threads = 2 (--threads), every path runs once per round, interleaved
(A B C ... A B C ...), for >= 5 rounds; a path's time in a round is the mean over calls within
`--min-time` seconds (at least one call) of the four Linears of a layer summed. It prints each
path's median layer time, the min-max spread over rounds, and speed / dense (the dense median
time over the path's: above 1 is faster than dense).

With --e2e it instead times the engine end to end: tokens/s of greedy generation (16-token
random prompts, 32 new tokens each, so decode steps dominate) of the base checkpoint and of each
compressed one, every compressed one on each plan of --e2e-plans (HUB_CPU_QUANT; default
"dense,native": the weight dequantized once, and our kernel reading the codes), all models
loaded once and run interleaved in rounds.

Paths (kernels.cpu_quant; "reference" is the per-call twin the CPU ran before):
  dense          F.linear, float32 weight (the base model)
  w4a16-ref      reference.wna16_gemm: int4 dequantized on every call
  w4a16-dense    int4 dequantized once at load (the engine's CPU plan on AVX2)
  w4a16-int4mm   torch.ops.aten._weight_int4pack_mm_for_cpu (symmetric, group 128, or 64 if K needs it)
  w4a16-native   kernels.cpu_native on the int4 codes (the engine's CPU plan where it builds)
  w8a16-int8mm   torch.ops.aten._weight_int8pack_mm (int8, per-channel scales)
  w8a16-native   kernels.cpu_native on the int8 codes, per-channel scales
  w8a8-ref       reference.quantize_per_token + reference.scaled_mm (dequantized on every call)
  w8a8-dense     cpu_quant.quantize_per_token, then F.linear on the weight dequantized once
                 (the engine's CPU plan on AVX2)
  w8a8-intmm     cpu_quant.quantize_per_token, then torch._int_mm (int8 x int8 -> int32)
  w8a8-native    kernels.cpu_native: per-token int8 activations, then the int8 weight
  fp8-ref        reference.quantize_per_token (FP8) + reference.scaled_mm
  fp8-dense      cpu_quant.quantize_per_token (FP8), then F.linear on the weight dequantized once
                 (the engine's CPU plan where the native kernel cannot run)
  fp8-native     kernels.cpu_native: per-token FP8 activations, then the FP8 weight
The -dense, -intmm and -native W8A8 / FP8 paths include the per-token activation quantization each call needs (in
the engine the norm in front does it for qkv, gate/up and down, with the reference quantizer).
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernels import cpu_native, cpu_quant, reference

MODELS = {
    # hidden, intermediate, heads, kv heads, head dim
    "smollm2-135m": (576, 1536, 9, 3, 64),
    "llama-1b": (2048, 8192, 32, 8, 64),
}


def layer_shapes(hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int) -> list[tuple[int, int]]:
    """(N, K) of the fused qkv, o_proj, fused gate/up and down_proj."""
    return [
        ((heads + 2 * kv_heads) * head_dim, hidden),
        (hidden, heads * head_dim),
        (2 * inter, hidden),
        (hidden, inter),
    ]


def make_paths(n: int, k: int, g: torch.Generator) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    dense = torch.randn(n, k, generator=g) * 0.02
    group = 128 if k % 128 == 0 else 64
    packed4 = torch.randint(-(2**31), 2**31 - 1, (n, k // 8), generator=g, dtype=torch.int32)
    scale4 = torch.rand(n, k // group, generator=g) * 0.01
    w4_dense = cpu_quant.dense_from_packed(packed4, scale4, None, 4, group)
    w4, sz4, g4 = cpu_quant.pack_int4(packed4, scale4, None, group, torch.float32)
    packed8 = torch.randint(-(2**31), 2**31 - 1, (n, k // 4), generator=g, dtype=torch.int32)
    scale8 = torch.rand(n, 1, generator=g) * 0.01
    w8, s8, _ = cpu_quant.pack_int8_channel(packed8, scale8, None)
    q8 = torch.randint(-128, 128, (n, k), generator=g).to(torch.int8)
    qs8 = torch.rand(n, 1, generator=g) * 0.01
    w8a8_dense = cpu_quant.dense_from_scaled(q8, qs8, torch.float32)
    fp8 = (torch.randn(n, k, generator=g) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    fs8 = torch.rand(n, 1, generator=g) * 0.001
    fp8_dense = cpu_quant.dense_from_scaled(fp8, fs8, torch.float32)
    qs8_row = qs8.reshape(1, -1)
    native = {
        "w4": cpu_native.pack_wna16(packed4, scale4, None, 4),
        "w8": cpu_native.pack_wna16(packed8, scale8, None, 8),
        "w8a8": cpu_native.pack_scaled(q8, qs8),
        "fp8": cpu_native.pack_scaled(fp8, fs8),
    }

    def scaled(x: torch.Tensor, qdtype: torch.dtype, run: Callable, fast: bool = True) -> torch.Tensor:
        q, s = (cpu_quant if fast else reference).quantize_per_token(x, qdtype)
        return run(q, s)

    return {
        "dense": lambda x: F.linear(x, dense),
        "w4a16-ref": lambda x: reference.wna16_gemm(x, packed4, scale4, None, 4, group),
        "w4a16-dense": lambda x: cpu_quant.dense_wna16_mm(x, w4_dense),
        "w4a16-int4mm": lambda x: cpu_quant.int4_mm(x, w4, sz4, g4),
        "w4a16-native": lambda x: cpu_native.mm(x, native["w4"]),
        "w8a16-int8mm": lambda x: cpu_quant.int8_channel_mm(x, w8, s8, None),
        "w8a16-native": lambda x: cpu_native.mm(x, native["w8"]),
        "w8a8-ref": lambda x: scaled(
            x, torch.int8, lambda q, s: reference.scaled_mm(q, q8, s, qs8, x.dtype), fast=False
        ),
        "w8a8-dense": lambda x: scaled(
            x, torch.int8, lambda q, s: cpu_quant.dense_scaled_mm(q, s, w8a8_dense, x.dtype, None)
        ),
        "w8a8-intmm": lambda x: scaled(
            x, torch.int8, lambda q, s: cpu_quant.int8_int_mm(q, s, q8.t(), qs8_row, x.dtype, None)
        ),
        "w8a8-native": lambda x: cpu_native.mm(x, native["w8a8"], torch.int8),
        "fp8-ref": lambda x: scaled(
            x, torch.float8_e4m3fn, lambda q, s: reference.scaled_mm(q, fp8, s, fs8, x.dtype), fast=False
        ),
        "fp8-dense": lambda x: scaled(
            x, torch.float8_e4m3fn, lambda q, s: cpu_quant.dense_scaled_mm(q, s, fp8_dense, x.dtype, None)
        ),
        "fp8-native": lambda x: cpu_native.mm(x, native["fp8"], torch.float8_e4m3fn),
    }


def time_layer(fns: list[Callable], xs: list[torch.Tensor], min_time: float) -> float:
    """Seconds per call of the four Linears in a row, averaged over calls within min_time."""
    calls, start = 0, time.perf_counter()
    while True:
        for fn, x in zip(fns, xs):
            fn(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def e2e(base: str, checkpoints: list[str], plans: list[str], batches: list[int], rounds: int) -> None:
    from engine import LLM, SamplingParams

    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    models: dict[str, LLM] = {}
    for path, plan in [(base, None)] + [(c, p) for c in checkpoints for p in plans]:
        if plan is None:
            os.environ.pop("HUB_CPU_QUANT", None)
        else:
            os.environ["HUB_CPU_QUANT"] = plan
        label = os.path.basename(path.rstrip("/")) + ("" if path == base else f" [{plan}]")
        models[label] = LLM(path, dtype="float32", device="cpu", num_kv_blocks=128, enable_prefix_caching=False)
    os.environ.pop("HUB_CPU_QUANT", None)
    g = torch.Generator().manual_seed(0)
    print(f"{'batch':>5} {'model':<34} {'median tok/s':>12} {'min-max tok/s':>15} {'vs base':>8}")
    for batch in batches:
        prompts = [torch.randint(0, 10000, (16,), generator=g).tolist() for _ in range(batch)]
        for llm in models.values():  # warm-up
            llm.generate(prompts, SamplingParams(max_tokens=2, temperature=0, ignore_eos=True))
        rates: dict[str, list[float]] = {label: [] for label in models}
        for _ in range(rounds):
            for label, llm in models.items():
                start = time.perf_counter()
                llm.generate(prompts, params)
                rates[label].append(batch * params.max_tokens / (time.perf_counter() - start))
        base_rate = statistics.median(rates[next(iter(models))])
        for label, r in rates.items():
            med = statistics.median(r)
            print(f"{batch:>5} {label:<34} {med:>12.1f} {f'{min(r):.1f}-{max(r):.1f}':>15} {med / base_rate:>8.2f}")


def main() -> None:
    try:
        run()
    finally:
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--paths", default="", help="comma-separated subset of the paths (dense is always run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--e2e", nargs="+", metavar="DIR", help="base checkpoint, then compressed ones")
    parser.add_argument("--e2e-batches", default="1,8")
    parser.add_argument(
        "--e2e-plans", default="dense,native", help="HUB_CPU_QUANT plans to run each compressed model on"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"threads {torch.get_num_threads()}, rounds {args.rounds}, min time {args.min_time}s, "
        f"load average {os.getloadavg()[0]:.1f} (a shared machine: other processes stall OpenMP threads)"
    )
    if args.e2e:
        batches = [int(b) for b in args.e2e_batches.split(",")]
        return e2e(args.e2e[0], args.e2e[1:], args.e2e_plans.split(","), batches, args.rounds)
    g = torch.Generator().manual_seed(0)
    for model in args.models.split(","):
        shapes = layer_shapes(*MODELS[model])
        per_shape = [make_paths(n, k, g) for n, k in shapes]
        names = list(per_shape[0])
        if args.paths:
            names = ["dense", *[p for p in args.paths.split(",") if p != "dense"]]
        print(f"\n{model}: Linears (N, K) {shapes}")
        print(f"{'batch':>5} {'path':<14} {'median ms':>10} {'min-max ms':>17} {'speed/dense':>11}")
        for m in map(int, args.batches.split(",")):
            xs = [torch.randn(m, k, generator=g) for _, k in shapes]
            times: dict[str, list[float]] = {name: [] for name in names}
            for fns in per_shape:  # warm up every path once (packing caches, first-call allocs)
                for name in names:
                    fns[name](xs[per_shape.index(fns)])
            for _ in range(args.rounds):
                for name in names:
                    times[name].append(time_layer([fns[name] for fns in per_shape], xs, args.min_time))
            dense = statistics.median(times["dense"])
            for name in names:
                med = statistics.median(times[name])
                spread = f"{min(times[name]) * 1e3:.3f}-{max(times[name]) * 1e3:.3f}"
                print(f"{m:>5} {name:<14} {med * 1e3:>10.3f} {spread:>17} {dense / med:>11.3f}")


if __name__ == "__main__":
    main()
