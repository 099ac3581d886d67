"""Kernel benchmark: Triton kernels against the device's own copy bandwidth and against the
PyTorch references, in one process on one CUDA device.

    python -m bench.kernel_speed [--json PATH] [--sweep] [--quick]

(run as a module from the repository root, so that the project's packages import).

- copy bandwidth: a large device-to-device copy, bytes read + written over the median time;
- decode attention (Llama-3.1-8B shapes: 32 query / 8 KV heads, head_dim 128, bf16, 16-token
  blocks scattered over the cache) at contexts 1k/4k/16k and batch 1..64, heuristic vs no
  split vs fixed split-K segment counts: bytes of K/V + Q read and output written over the
  median time, as a fraction of the copy bandwidth; the heuristic also launched eagerly, and
  torch SDPA over contiguous K/V (no paging) as a yardstick;
- prefill attention (8 x 512 new tokens) in TFLOP/s beside SDPA;
- KV-cache write, RMSNorm, fused add + RMSNorm, rotary, SiLU-and-mul: time and speedup over the
  reference twins on the same device, bandwidth fraction;
- --sweep: tile size, warps and pipeline depth for decode and prefill (to tune the heuristics).
Times are per call inside a CUDA graph (as the engine replays decode steps) whose calls cycle
through enough input sets to spill the L2 cache, so every call reads DRAM.
"""

import argparse
import functools
import json
import math
import sys
import time

import torch
import triton

from kernels import activation, attention, cache, norm, reference, rotary

Q_HEADS, KV_HEADS, HEAD_DIM, BLOCK_SIZE = 32, 8, 128, 16
HIDDEN, INTERMEDIATE = 4096, 14336
DTYPE = torch.bfloat16
SPILL_BYTES = 512 << 20  # several times any current L2
SWEEP_DECODE = ((4096, 1), (16384, 8), (16384, 64))  # (context, batch)


def median_ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median")


def graph_ms(calls: list) -> float:
    """Median time per call of one CUDA graph that makes each call once: no launch gaps (the
    engine replays decode steps as graphs), and consecutive calls read different inputs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    ms = median_ms(graph.replay) / len(calls)
    del graph
    return ms


def eager_ms(calls: list) -> float:
    """Median time of one call launched from Python, cycling through `calls`' inputs. Also
    for SDPA, whose capture in a graph upsets the default RNG in some PyTorch builds."""
    state = {"i": 0}

    def next_call():
        state["i"] = (state["i"] + 1) % len(calls)
        calls[state["i"]]()

    return median_ms(next_call)


def sdpa(*args, **kwargs):
    return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)


def copy_bandwidth() -> float:
    """Bytes read + written per second by a 2 GiB device-to-device copy."""
    src = torch.randn(1 << 29, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    nbytes = 2 * src.numel() * src.element_size()
    return nbytes / (ms * 1e-3)


def copies_for(nbytes: int, most: int = 32) -> int:
    """Input sets enough to spill the L2 when calls cycle through them."""
    return max(2, min(most, math.ceil(SPILL_BYTES / max(nbytes, 1))))


def decode_bytes(batch: int, ctx: int) -> int:
    kv = 2 * batch * ctx * KV_HEADS * HEAD_DIM * DTYPE.itemsize
    return kv + 2 * batch * Q_HEADS * HEAD_DIM * DTYPE.itemsize  # + Q read, output written


def bench_decode(batch: int, ctx: int, copy_bw: float, variants: dict[str, dict], yardstick: bool = True) -> list[dict]:
    """Decode step of `batch` sequences at context `ctx`; `copies` independent batches share
    one cache with all blocks shuffled, and the timed graph runs each batch once."""
    nbytes = decode_bytes(batch, ctx)
    copies = copies_for(nbytes)
    blocks_per_seq = ctx // BLOCK_SIZE
    num_blocks = batch * blocks_per_seq * copies
    k_cache = torch.randn(num_blocks, BLOCK_SIZE, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    tables = torch.randperm(num_blocks, device="cuda").to(torch.int32).view(copies, batch, blocks_per_seq)
    queries = torch.randn(copies, batch, Q_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    seq_lens = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    qsl = torch.arange(batch + 1, dtype=torch.int32, device="cuda")
    scale = HEAD_DIM**-0.5
    out = torch.empty(batch, Q_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)

    def calls(launch):
        return [
            functools.partial(
                attention.paged_attention, queries[i], k_cache, v_cache, tables[i], seq_lens, qsl, scale, out, **launch
            )
            for i in range(copies)
        ]

    if batch * ctx <= 16 * 4096:  # the reference loops over sequences in Python
        ref = reference.paged_attention(queries[0], k_cache, v_cache, tables[0], seq_lens, qsl, scale)
        for launch in variants.values():
            attention.paged_attention(queries[0], k_cache, v_cache, tables[0], seq_lens, qsl, scale, out, **launch)
            err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
            assert err < 1.6e-2, f"decode attention wrong at batch {batch} ctx {ctx} {launch}: rel err {err}"
    rows = []

    def row(variant, ms, **extra):
        rows.append(
            dict(
                kernel="decode_attention",
                variant=variant,
                batch=batch,
                ctx=ctx,
                ms=ms,
                gbps=nbytes / ms * 1e-6,
                frac_copy_bw=nbytes / (ms * 1e-3) / copy_bw,
                **extra,
            )
        )

    for name, launch in variants.items():
        try:
            row(name, graph_ms(calls(launch)))
        except triton.runtime.errors.OutOfResources as exc:
            rows.append(dict(kernel="decode_attention", variant=name, batch=batch, ctx=ctx, error=str(exc)))
    if yardstick:
        row("heuristic_eager", eager_ms(calls({})))
        # SDPA over contiguous K/V of the same sizes (fewer copies: it is not paged)
        sd_copies = copies_for(nbytes, most=8)
        if nbytes * sd_copies < (8 << 30):
            kc = torch.randn(sd_copies, batch, KV_HEADS, ctx, HEAD_DIM, device="cuda", dtype=DTYPE)
            vc = torch.randn_like(kc)
            qc = torch.randn(sd_copies, batch, Q_HEADS, 1, HEAD_DIM, device="cuda", dtype=DTYPE)
            row(
                "torch_sdpa_contiguous",
                eager_ms([functools.partial(sdpa, qc[i], kc[i], vc[i], enable_gqa=True) for i in range(sd_copies)]),
            )
    return rows  # the caches go with this frame; the allocator reuses their memory for the next shape


def bench_prefill(variants: dict[str, dict], batch: int = 8, q_len: int = 512, yardstick: bool = True) -> list[dict]:
    blocks_per_seq = q_len // BLOCK_SIZE
    num_blocks = batch * blocks_per_seq
    k_cache = torch.randn(num_blocks, BLOCK_SIZE, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    tables = torch.randperm(num_blocks, device="cuda").to(torch.int32).view(batch, blocks_per_seq)
    query = torch.randn(batch * q_len, Q_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    seq_lens = torch.full((batch,), q_len, dtype=torch.int32, device="cuda")
    qsl = torch.arange(0, (batch + 1) * q_len, q_len, dtype=torch.int32, device="cuda")
    out = torch.empty_like(query)
    flops = 4 * batch * Q_HEADS * HEAD_DIM * q_len * q_len / 2  # causal half
    rows = []
    for name, launch in variants.items():
        call = functools.partial(
            attention.paged_attention, query, k_cache, v_cache, tables, seq_lens, qsl, HEAD_DIM**-0.5, out, **launch
        )
        try:
            ms = graph_ms([call])
        except triton.runtime.errors.OutOfResources as exc:
            rows.append(dict(kernel="prefill_attention", variant=name, error=str(exc)))
            continue
        rows.append(
            dict(kernel="prefill_attention", variant=name, batch=batch, q_len=q_len, ms=ms, tflops=flops / ms * 1e-9)
        )
    if yardstick:
        q4 = query.view(batch, q_len, Q_HEADS, HEAD_DIM).transpose(1, 2).contiguous()
        k4 = torch.randn(batch, KV_HEADS, q_len, HEAD_DIM, device="cuda", dtype=DTYPE)
        v4 = torch.randn_like(k4)
        ms = eager_ms([functools.partial(sdpa, q4, k4, v4, is_causal=True, enable_gqa=True)])
        rows.append(
            dict(
                kernel="prefill_attention",
                variant="torch_sdpa_contiguous",
                batch=batch,
                q_len=q_len,
                ms=ms,
                tflops=flops / ms * 1e-9,
            )
        )
    return rows


def bench_elementwise(tokens: int, copy_bw: float) -> list[dict]:
    """Each Triton kernel vs its reference twin on the same inputs; bytes = inputs + outputs."""
    e = DTYPE.itemsize
    eps = 1e-5
    w = torch.rand(HIDDEN, device="cuda", dtype=DTYPE)
    cos_sin = torch.randn(8192, HEAD_DIM, device="cuda")
    num_slots = max(tokens * 4, 4096)
    k_cache = torch.randn(num_slots // BLOCK_SIZE, BLOCK_SIZE, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    cases = {
        "rms_norm": (
            lambda: (torch.randn(tokens, HIDDEN, device="cuda", dtype=DTYPE), w, eps),
            norm.rms_norm,
            reference.rms_norm,
            2 * tokens * HIDDEN * e,
        ),
        "fused_add_rms_norm": (
            lambda: (
                torch.randn(tokens, HIDDEN, device="cuda", dtype=DTYPE),
                torch.randn(tokens, HIDDEN, device="cuda", dtype=DTYPE),
                w,
                eps,
            ),
            norm.fused_add_rms_norm,
            reference.fused_add_rms_norm,
            4 * tokens * HIDDEN * e,
        ),
        "rotary_embedding": (
            lambda: (
                torch.randint(0, 8192, (tokens,), device="cuda"),
                torch.randn(tokens, Q_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE),
                torch.randn(tokens, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE),
                cos_sin,
            ),
            rotary.rotary_embedding,
            reference.rotary_embedding,
            2 * tokens * (Q_HEADS + KV_HEADS) * HEAD_DIM * e + tokens * HEAD_DIM * 4,
        ),
        "silu_and_mul": (
            lambda: (torch.randn(tokens, 2 * INTERMEDIATE, device="cuda", dtype=DTYPE),),
            activation.silu_and_mul,
            reference.silu_and_mul,
            3 * tokens * INTERMEDIATE * e,
        ),
        "store_kvcache": (
            lambda: (
                torch.randn(tokens, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE),
                torch.randn(tokens, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE),
                k_cache,
                v_cache,
                torch.randperm(num_slots, device="cuda")[:tokens],
            ),
            cache.store_kvcache,
            reference.store_kvcache,
            4 * tokens * KV_HEADS * HEAD_DIM * e,
        ),
    }
    rows = []
    for name, (make, fast, ref, nbytes) in cases.items():
        sets = [make() for _ in range(copies_for(nbytes))]
        if name != "store_kvcache":
            fast_out, ref_out = fast(*sets[0]), ref(*sets[0])
            for a, b in zip(
                fast_out if isinstance(fast_out, tuple) else (fast_out,),
                ref_out if isinstance(ref_out, tuple) else (ref_out,),
            ):
                err = ((a.double() - b.double()).norm() / b.double().norm()).item()
                assert err < 1.6e-2, f"{name} wrong at {tokens} tokens: rel err {err}"
        ms = graph_ms([functools.partial(fast, *args) for args in sets])
        ref_calls = [functools.partial(ref, *args) for args in sets]
        # the store reference selects slots with a boolean mask, which a graph cannot capture
        ref_mode = "eager" if name == "store_kvcache" else "graph"
        ref_ms = eager_ms(ref_calls) if ref_mode == "eager" else graph_ms(ref_calls)
        rows.append(
            dict(
                kernel=name,
                tokens=tokens,
                ms=ms,
                ref_ms=ref_ms,
                ref_mode=ref_mode,
                speedup=ref_ms / ms,
                frac_copy_bw=nbytes / (ms * 1e-3) / copy_bw,
            )
        )
    return rows


def sweep(copy_bw: float) -> list[dict]:
    """Decode and prefill launch configurations, to tune the heuristics."""
    decode = {}
    for tile_n in (32, 64, 128):
        for warps, stages in ((4, 3), (8, 3)):
            for segments in (1, 16):
                decode[f"t{tile_n}_w{warps}_s{stages}_seg{segments}"] = dict(
                    tile_n=tile_n, num_warps=warps, num_stages=stages, num_segments=segments
                )
    rows = []
    for ctx, batch in SWEEP_DECODE:
        rows += bench_decode(batch, ctx, copy_bw, decode, yardstick=False)
    prefill = {}
    for block_m in (64, 128):
        for tile_n in (32, 64):
            for warps, stages in ((4, 3), (8, 3)):
                prefill[f"m{block_m}_t{tile_n}_w{warps}_s{stages}"] = dict(
                    block_m=block_m, tile_n=tile_n, num_warps=warps, num_stages=stages
                )
    rows += bench_prefill(prefill, yardstick=False)
    for r in rows:
        r["sweep"] = True
    return rows


def print_decode(rows: list[dict], contexts, batches, columns) -> None:
    print("\ndecode attention (CUDA graph), fraction of copy bandwidth: bytes of K/V + Q + out / time")
    print(f"{'ctx':>6} {'batch':>5} " + " ".join(f"{c[:9]:>9}" for c in columns) + f" {'heur. us':>9}")
    for ctx in contexts:
        for batch in batches:
            cells = {
                r["variant"]: r
                for r in rows
                if r["kernel"] == "decode_attention"
                and not r.get("sweep")
                and r["ctx"] == ctx
                and r["batch"] == batch
                and "ms" in r
            }
            print(
                f"{ctx:>6} {batch:>5} "
                + " ".join(f"{cells[c]['frac_copy_bw']:>9.2f}" if c in cells else f"{'-':>9}" for c in columns)
                + f" {cells['heuristic']['ms'] * 1e3:>9.1f}"
            )


def print_rest(rows: list[dict]) -> None:
    print("\nprefill attention (8 x 512 tokens, causal; Triton in a CUDA graph, SDPA eager)")
    for r in rows:
        if r["kernel"] == "prefill_attention" and not r.get("sweep"):
            print(f"  {r['variant']:<24} {r['ms']:.3f} ms  {r['tflops']:.0f} TFLOP/s")
    print("\nelementwise kernels vs PyTorch reference twins (CUDA graph unless ref mode says eager)")
    print(f"{'kernel':<20} {'tokens':>6} {'us':>8} {'ref us':>8} {'ref mode':>8} {'speedup':>8} {'frac bw':>8}")
    for r in rows:
        if "speedup" in r:
            print(
                f"{r['kernel']:<20} {r['tokens']:>6} {r['ms'] * 1e3:>8.1f} {r['ref_ms'] * 1e3:>8.1f} {r['ref_mode']:>8}"
                f" {r['speedup']:>8.2f} {r['frac_copy_bw']:>8.2f}"
            )


def print_sweep(rows: list[dict]) -> None:
    print("\nsweep: best configurations per shape")
    for ctx, batch in SWEEP_DECODE:
        cells = sorted(
            (
                r
                for r in rows
                if r.get("sweep")
                and r["kernel"] == "decode_attention"
                and "ms" in r
                and r["ctx"] == ctx
                and r["batch"] == batch
            ),
            key=lambda r: r["ms"],
        )
        print(
            f"  decode ctx {ctx:>5} batch {batch:>2}: "
            + ", ".join(f"{r['variant']} {r['frac_copy_bw']:.2f}" for r in cells[:4])
        )
    cells = sorted(
        (r for r in rows if r.get("sweep") and r["kernel"] == "prefill_attention" and "ms" in r), key=lambda r: r["ms"]
    )
    print("  prefill: " + ", ".join(f"{r['variant']} {r['tflops']:.0f}" for r in cells[:5]))
    failed = sorted({r["variant"] for r in rows if r.get("sweep") and "error" in r})
    if failed:
        print("  out of resources: " + ", ".join(failed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write all rows here (rewritten after each section)")
    parser.add_argument("--sweep", action="store_true", help="also sweep launch configurations")
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.kernel_speed needs a CUDA device: the Triton kernels only run on CPU in the interpreter")
    started = time.time()
    device = torch.cuda.get_device_name()
    copy_bw = copy_bandwidth()
    print(f"device: {device}   copy bandwidth (read+write): {copy_bw / 1e9:.0f} GB/s", flush=True)
    rows: list[dict] = []

    def save() -> None:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    dict(
                        device=device,
                        copy_bandwidth=copy_bw,
                        triton=triton.__version__,
                        torch=torch.__version__,
                        seconds=time.time() - started,
                        rows=rows,
                    ),
                    f,
                    indent=1,
                )

    contexts = (1024, 4096, 16384)
    batches = (1, 16, 64) if args.quick else (1, 4, 16, 32, 64)
    variants = {
        "heuristic": {},
        "no_split": dict(num_segments=1),
        "split8": dict(num_segments=8),
        "split32": dict(num_segments=32),
    }
    for ctx in contexts:
        for batch in batches:
            rows += bench_decode(batch, ctx, copy_bw, variants)
    save()
    print_decode(rows, contexts, batches, [*variants, "heuristic_eager", "torch_sdpa_contiguous"])
    rows += bench_prefill({"heuristic": {}})
    for tokens in (1, 256, 4096):
        rows += bench_elementwise(tokens, copy_bw)
    save()
    print_rest(rows)
    if args.sweep:
        rows += sweep(copy_bw)
        save()
        print_sweep(rows)
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
