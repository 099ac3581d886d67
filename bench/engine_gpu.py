"""Engine GPU benchmark, in one process on one CUDA device:

- a Llama-3.1-8B-shaped checkpoint with random bf16 weights is written at run time (transformers
  config, safetensors shards; nothing is downloaded);
- transformers `generate` (batched, left padding, greedy, exactly --output-len new tokens), one
  run per `--hf-runs` entry REQUESTSxBATCH (the first REQUESTS requests in batches of BATCH):
  output tokens/s;
- the engine (CUDA graphs, default KV sizing from free memory) on all --num-requests requests of
  --input-len random tokens / --output-len output tokens (the first run on the prompts
  transformers got, each repeat on fresh ones): output tokens/s, and the ratio of its best
  run to each transformers run;
- batch-1 decode: the engine's step time (median gap between tokens of one request) and the
  graph replay alone, against the floor = bytes a decode step must read (every weight but the
  embedding table, plus the request's K/V) / the device's measured copy bandwidth.

    python3 -m bench.engine_gpu [--json PATH]

(run as a module from the repository root, like bench.kernel_speed, whose copy bandwidth it uses).
"""

import argparse
import gc
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import triton

from bench.engine_throughput import generate
from bench.kernel_speed import copy_bandwidth
from engine import LLM, SamplingParams

LLAMA_31_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    bos_token_id=128000,
    eos_token_id=128001,
    tie_word_embeddings=False,
)
SHARD_BYTES = 4 << 30


def write_checkpoint(out: Path, shape: dict = LLAMA_31_8B, device: str = "cuda", seed: int = 0) -> Path:
    """config.json + random bf16 safetensors shards of a Llama model of the given shape."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**shape, architectures=["LlamaForCausalLM"], dtype="bfloat16")
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in AutoModelForCausalLM.from_config(config).state_dict().items()}
    config.save_pretrained(out)
    gen = torch.Generator(device).manual_seed(seed)
    weight_map, shard, shard_bytes, index = {}, {}, 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, index
        name = f"model-{index:05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard, shard_bytes, index = {}, 0, index + 1

    for name, size in shapes.items():
        if name.endswith("norm.weight"):
            t = 1 + 0.1 * torch.randn(size, generator=gen, device=device)
        else:
            t = 0.02 * torch.randn(size, generator=gen, device=device)
        shard[name] = t.to(torch.bfloat16).cpu()
        shard_bytes += shard[name].numel() * 2
        if shard_bytes >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    total = sum(math.prod(s) * 2 for s in shapes.values())
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index_file))
    return out


def random_prompts(n: int, length: int, vocab: int, special: set[int], seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [
        [t for t in (rng.randrange(vocab) for _ in range(length * 2)) if t not in special][:length] for _ in range(n)
    ]


def run_transformers(
    model, prompts: list[list[int]], output_len: int, batch_size: int, pad_id: int
) -> tuple[float, int]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    produced = generate(model, prompts, output_len, batch_size, pad_id)
    torch.cuda.synchronize()
    return time.perf_counter() - start, produced


def run_engine(llm: LLM, prompts: list[list[int]], output_len: int) -> tuple[float, int, list]:
    params = SamplingParams(max_tokens=output_len, temperature=0, ignore_eos=True)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params)
    return time.perf_counter() - start, sum(len(o.token_ids) for o in outputs), outputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--num-requests", type=int, default=256)
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--hf-runs", default="64x32,256x256", help="transformers runs, REQUESTSxBATCH,...")
    p.add_argument("--engine-repeats", type=int, default=2)
    p.add_argument("--batch1-output-len", type=int, default=256)
    p.add_argument("--checkpoint-dir", type=Path, default=None, help="default: a temporary folder in /dev/shm or /tmp")
    args = p.parse_args()

    result: dict = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "command": " ".join(["python3 -m bench.engine_gpu", *sys.argv[1:]]),
        "workload": {"num_requests": args.num_requests, "input_len": args.input_len, "output_len": args.output_len},
    }

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))

    result["copy_bandwidth"] = copy_bandwidth()
    print(f"{result['device']}: copy bandwidth {result['copy_bandwidth'] / 1e9:.0f} GB/s", flush=True)

    base = Path("/dev/shm") if shutil.disk_usage("/dev/shm").free > 40e9 else Path(tempfile.gettempdir())
    ckpt = args.checkpoint_dir or Path(tempfile.mkdtemp(prefix="llama31-8b-random-", dir=base))
    t = time.perf_counter()
    if not (ckpt / "config.json").is_file():
        write_checkpoint(ckpt)
    result["checkpoint_write_s"] = round(time.perf_counter() - t, 1)
    print(f"checkpoint in {ckpt} ({result['checkpoint_write_s']} s)", flush=True)

    cfg = LLAMA_31_8B
    special = {cfg["bos_token_id"], cfg["eos_token_id"]}
    prompts = random_prompts(args.num_requests, args.input_len, cfg["vocab_size"], special)
    pad_id = cfg["eos_token_id"]

    # transformers first, then freed: the engine sizes its KV cache from what is left
    from transformers import AutoModelForCausalLM

    t = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16, device_map="cuda").eval()
    result["hf_load_s"] = round(time.perf_counter() - t, 1)
    run_transformers(hf, prompts[:2], 4, 2, pad_id)  # warm-up
    result["transformers"] = []
    for spec in args.hf_runs.split(","):
        requests, batch_size = map(int, spec.split("x"))
        hf_s, hf_tokens = run_transformers(hf, prompts[:requests], args.output_len, batch_size, pad_id)
        assert hf_tokens == requests * args.output_len
        result["transformers"].append(
            {
                "requests": requests,
                "batch_size": batch_size,
                "attention": hf.config._attn_implementation,
                "s": round(hf_s, 2),
                "output_tok_s": round(hf_tokens / hf_s, 1),
            }
        )
        print("transformers:", result["transformers"][-1], flush=True)
        save()
    del hf
    gc.collect()
    torch.cuda.empty_cache()

    t = time.perf_counter()
    llm = LLM(ckpt, device="cuda")
    runner = llm.runner
    result["engine_init_s"] = round(time.perf_counter() - t, 1)  # load, KV cache, graph capture
    result["engine_config"] = {
        "max_num_seqs": llm.config.max_num_seqs,
        "max_num_batched_tokens": llm.config.max_num_batched_tokens,
        "max_model_len": llm.config.max_model_len,
        "kv_capacity_tokens": llm.kv_capacity_tokens,
        "kv_cache_bytes": runner.kv_cache.numel() * runner.kv_cache.element_size(),
        "weights_bytes": llm.weights_bytes,
        "graph_batch_sizes": runner.graph_batch_sizes,
    }
    print("engine:", result["engine_config"], f"init {result['engine_init_s']} s", flush=True)
    # warm-up on a small copy of the workload: compiles the eager prefill and mixed-step kernels
    run_engine(llm, random_prompts(32, args.input_len, cfg["vocab_size"], special, seed=1), 8)
    result["engine"] = []
    for repeat in range(args.engine_repeats):
        # a repeat of the same prompts would find them in the prefix cache: fresh ones each time
        run_prompts = (
            prompts
            if repeat == 0
            else random_prompts(len(prompts), args.input_len, cfg["vocab_size"], special, seed=100 + repeat)
        )
        replays, steps = runner.num_graph_replays, llm.stats.steps
        engine_s, engine_tokens, _ = run_engine(llm, run_prompts, args.output_len)
        assert engine_tokens == len(prompts) * args.output_len
        result["engine"].append(
            {
                "requests": len(prompts),
                "s": round(engine_s, 2),
                "output_tok_s": round(engine_tokens / engine_s, 1),
                "total_tok_s": round((engine_tokens + len(prompts) * args.input_len) / engine_s, 1),
                "steps": llm.stats.steps - steps,
                "graph_steps": runner.num_graph_replays - replays,
                "preemptions": llm.stats.preemptions,
            }
        )
    best_engine = max(r["output_tok_s"] for r in result["engine"])
    result["ratio_output_tok_s"] = {
        f"{r['requests']}x{r['batch_size']}": round(best_engine / r["output_tok_s"], 2) for r in result["transformers"]
    }
    save()

    # batch 1: one request decoding alone (a prompt the prefix cache has not seen)
    fresh = random_prompts(1, args.input_len, cfg["vocab_size"], special, seed=99)
    _, _, outputs = run_engine(llm, fresh, args.batch1_output_len)
    times = outputs[0].token_times
    gaps = [b - a for a, b in zip(times[1:], times[2:])]  # skip the first gap (prefill to decode)
    ctx = args.input_len + args.batch1_output_len
    embed_bytes = cfg["vocab_size"] * cfg["hidden_size"] * 2
    kv_bytes = ctx * 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 2
    floor_bytes = llm.weights_bytes - embed_bytes + kv_bytes
    floor_ms = floor_bytes / result["copy_bandwidth"] * 1e3
    # the step's device work: the graph of the 32 layers, then the LM head and argmax
    replay_ms = triton.testing.do_bench(runner.graphs[1].replay, warmup=25, rep=200, return_mode="median")
    head_ms = triton.testing.do_bench(
        lambda: runner.model.compute_logits(runner._g_hidden[:1]).argmax(-1), warmup=25, rep=200, return_mode="median"
    )
    step_ms = statistics.median(gaps) * 1e3
    result["batch1"] = {
        "context": ctx,
        "step_ms_median": round(step_ms, 3),
        "step_ms_p90": round(sorted(gaps)[int(0.9 * len(gaps))] * 1e3, 3),
        "graph_replay_ms": round(replay_ms, 3),
        "lm_head_argmax_ms": round(head_ms, 3),
        "device_step_over_floor": round((replay_ms + head_ms) / floor_ms, 2),
        "floor_bytes": floor_bytes,
        "floor_ms": round(floor_ms, 3),
        "step_over_floor": round(step_ms / floor_ms, 2),
    }
    save()
    print(json.dumps(result, indent=2), flush=True)
    if args.checkpoint_dir is None:
        shutil.rmtree(ckpt, ignore_errors=True)


if __name__ == "__main__":
    main()
