"""Fused MoE kernel benchmark on one CUDA device: `kernels.moe.fused_moe` against its twin
(`kernels.reference.fused_moe`, expert by expert with index_add) and against transformers' own
experts loop (`Qwen3MoeExperts` with experts_implementation="eager"), on one Qwen3-30B-A3B-shaped
layer: hidden 2048, 128 experts, top-8, expert width 768, bf16.

    python -m bench.moe_kernel [--json PATH]

(run as a module from the repository root, so that the project's packages import). For each
batch of 1 to 64 tokens (random router logits, softmax top-8 renormalized): median time per
call of each, launched from Python (`triton.testing.do_bench`), the fused kernel also inside a
CUDA graph (as the engine replays decode steps); expert bytes read = 3 * 2048 * 768 * 2 bytes per
distinct expert chosen, over the fused kernel's graph time. Without CUDA it says so and exits.
"""

import argparse
import json
import sys

import torch

HIDDEN, EXPERTS, TOP_K, INTER = 2048, 128, 8, 768
BATCHES = (1, 2, 4, 8, 16, 32, 64)
DTYPE = torch.bfloat16


def graph_ms(fn) -> float:
    import triton

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return triton.testing.do_bench(graph.replay, warmup=10, rep=100, return_mode="median")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures here as well")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench.moe_kernel needs a CUDA GPU and this machine has none: nothing measured", file=sys.stderr)
        return 2

    import triton
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeExperts

    from kernels import moe, reference

    dev = torch.device("cuda")
    torch.manual_seed(0)
    gate_up = (torch.randn(EXPERTS, 2 * INTER, HIDDEN, device=dev) / HIDDEN**0.5).to(DTYPE)
    down = (torch.randn(EXPERTS, HIDDEN, INTER, device=dev) / INTER**0.5).to(DTYPE)
    config = Qwen3MoeConfig(
        hidden_size=HIDDEN, moe_intermediate_size=INTER, num_experts=EXPERTS, experts_implementation="eager"
    )
    hf = Qwen3MoeExperts(config).to(dev, DTYPE)
    hf.gate_up_proj.data, hf.down_proj.data = gate_up, down

    def bench(fn) -> float:
        return triton.testing.do_bench(fn, warmup=10, rep=100, return_mode="median")

    rows = []
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, triton {triton.__version__}")
    print("| tokens | experts hit | fused µs (graph) | fused µs | twin µs | transformers µs | fused GB/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch in BATCHES:
        x = torch.randn(batch, HIDDEN, device=dev, dtype=DTYPE)
        weights, ids = torch.randn(batch, EXPERTS, device=dev).softmax(-1).topk(TOP_K, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True)
        out, ref = moe.fused_moe(x, gate_up, down, weights, ids), reference.fused_moe(x, gate_up, down, weights, ids)
        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        hit = ids.unique().numel()
        row = {
            "tokens": batch,
            "experts_hit": hit,
            "rel_err_vs_twin": err,
            "fused_graph_us": 1000 * graph_ms(lambda: moe.fused_moe(x, gate_up, down, weights, ids)),
            "fused_us": 1000 * bench(lambda: moe.fused_moe(x, gate_up, down, weights, ids)),
            "twin_us": 1000 * bench(lambda: reference.fused_moe(x, gate_up, down, weights, ids)),
            "transformers_us": 1000 * bench(lambda: hf(x, ids, weights.to(DTYPE))),
        }
        row["fused_gb_s"] = hit * 3 * HIDDEN * INTER * DTYPE.itemsize / row["fused_graph_us"] / 1e3
        rows.append(row)
        print(
            f"| {batch} | {hit} | {row['fused_graph_us']:.1f} | {row['fused_us']:.1f} | {row['twin_us']:.1f} "
            f"| {row['transformers_us']:.1f} | {row['fused_gb_s']:.0f} |  (rel. err. vs twin {err:.1e})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(dev), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
