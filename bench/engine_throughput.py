"""Engine vs transformers `generate`: output tokens per second on the same requests, same model,
same process, same thread count.

Every request has `--input-len` random prompt tokens and must produce exactly `--output-len`
tokens (the engine with ignore_eos, transformers with min_new_tokens), greedy. transformers
runs the whole batch at once, left-padded (a no-op when all prompts have the same length).
Runs alternate engine / transformers `--repeats` times, each repeat on new random prompts
(the same for both sides); the best run of each is reported, which filters out other load on
a shared machine. Each run also records the process's CPU
seconds (`time.process_time`), which other processes' load does not inflate the way it
inflates wall time: with one thread, the ratio of CPU seconds is the steadier figure.

    .venv/bin/python bench/engine_throughput.py [--model DIR] [--dtype float32] [--threads 2]
"""

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import LLM, SamplingParams  # noqa: E402
from engine.bench import Workload, random_prompts  # noqa: E402


def smollm2() -> Path:
    """SmolLM2-135M-Instruct, built once per machine by tests/smollm2.py."""
    from tests.smollm2 import build

    return build()


def run_engine(llm: LLM, prompts: list[list[int]], output_len: int) -> tuple[float, float, int]:
    params = SamplingParams(max_tokens=output_len, temperature=0, ignore_eos=True)
    start, cpu = time.perf_counter(), time.process_time()
    outputs = llm.generate(prompts, params)
    return time.perf_counter() - start, time.process_time() - cpu, sum(len(o.token_ids) for o in outputs)


def generate(model, prompts: list[list[int]], output_len: int, batch_size: int, pad_id: int) -> int:
    """transformers' greedy `generate` over `prompts` in left-padded batches, exactly `output_len`
    new tokens each; returns the tokens produced."""
    produced = 0
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            batch = prompts[i : i + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch], device=model.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=model.device)
            out = model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=output_len,
                min_new_tokens=output_len,
                do_sample=False,
                pad_token_id=pad_id,
            )
            produced += (out.shape[1] - width) * len(batch)
    return produced


def run_transformers(
    model, prompts: list[list[int]], output_len: int, batch_size: int, pad_id: int
) -> tuple[float, float, int]:
    start, cpu = time.perf_counter(), time.process_time()
    produced = generate(model, prompts, output_len, batch_size, pad_id)
    return time.perf_counter() - start, time.process_time() - cpu, produced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="checkpoint dir (default: SmolLM2-135M, tests/smollm2.py)")
    p.add_argument("--num-requests", type=int, default=64)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--hf-batch-size", type=int, default=None, help="default: all requests in one batch")
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model_dir = args.model or smollm2()
    dtype = getattr(torch, args.dtype)
    llm = LLM(model_dir, dtype=args.dtype, device="cpu", max_num_batched_tokens=args.max_num_batched_tokens)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    workload = Workload(args.num_requests, args.input_len, args.output_len)
    pad_id = llm.config.model.eos_token_ids[0] if llm.config.model.eos_token_ids else 0

    # warm both up (first-call allocations, lazy imports) on prompts of their own seed
    warm = random_prompts(llm, replace(workload, num_requests=2, seed=args.repeats))
    run_engine(llm, warm, 4)
    run_transformers(hf, warm, 4, 2, pad_id)

    engine_runs, hf_runs = [], []
    for repeat in range(args.repeats):
        # new prompts every repeat: the engine's prefix cache would otherwise serve a repeat's
        # prompts from the previous one, a head start transformers does not get
        prompts = random_prompts(llm, replace(workload, seed=repeat))
        engine_runs.append(run_engine(llm, prompts, args.output_len))
        hf_runs.append(run_transformers(hf, prompts, args.output_len, args.hf_batch_size or len(prompts), pad_id))
    engine_s, _, engine_tokens = min(engine_runs)
    hf_s, _, hf_tokens = min(hf_runs)
    engine_cpu_s = min(c for _, c, _ in engine_runs)
    hf_cpu_s = min(c for _, c, _ in hf_runs)
    assert engine_tokens == hf_tokens == args.num_requests * args.output_len

    result = {
        "model": model_dir.name,
        "dtype": args.dtype,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "workload": vars(workload),
        "max_num_batched_tokens": llm.config.max_num_batched_tokens,
        "engine_s": [round(s, 2) for s, _, _ in engine_runs],
        "transformers_s": [round(s, 2) for s, _, _ in hf_runs],
        "engine_cpu_s": [round(c, 2) for _, c, _ in engine_runs],
        "transformers_cpu_s": [round(c, 2) for _, c, _ in hf_runs],
        "engine_output_tok_s": round(engine_tokens / engine_s, 1),
        "transformers_output_tok_s": round(hf_tokens / hf_s, 1),
        "ratio": round(hf_s / engine_s, 2),
        "ratio_cpu_time": round(hf_cpu_s / engine_cpu_s, 2),
        "engine_preemptions": llm.stats.preemptions,
        "weights_bytes": llm.weights_bytes,
        "kv_capacity_tokens": llm.kv_capacity_tokens,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
