"""python -m engine generate|score|bench MODEL_DIR ..."""

import argparse
import dataclasses
import json
import sys

from engine.bench import compare, measure
from engine.llm import LLM
from engine.metrics import format_table, speedup_over_rounds
from engine.profiles import CPU_SCALE, PROFILES, get_profile, parse_concurrency
from engine.sampling_params import SamplingParams


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint directory (config.json + safetensors)")
    p.add_argument("--dtype", default="auto", help="auto (the checkpoint's), float32, bfloat16 or float16")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument(
        "--kv-cache-dtype",
        default="auto",
        help="auto (FP8 where the checkpoint has a kv_cache_scheme, else the compute dtype), fp8 (E4M3, "
        "scaled per layer), bfloat16, float16 or float32",
    )
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--num-kv-blocks", type=int, default=None)
    p.add_argument("--kv-cache-memory", type=int, default=None, help="bytes")
    p.add_argument("--no-prefix-caching", action="store_true")
    p.add_argument("--seed", type=int, default=0)


def _llm_options(args: argparse.Namespace) -> dict:
    return dict(
        dtype=args.dtype,
        device=args.device,
        kv_cache_dtype=args.kv_cache_dtype,
        block_size=args.block_size,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_model_len=args.max_model_len,
        num_kv_blocks=args.num_kv_blocks,
        kv_cache_memory=args.kv_cache_memory,
        enable_prefix_caching=not args.no_prefix_caching,
        seed=args.seed,
    )


def _build(args: argparse.Namespace) -> LLM:
    return LLM(args.model, **_llm_options(args))


def _progress(done: float, message: str) -> None:
    print(f"\r{done:6.1%} {message}", end="", file=sys.stderr, flush=True)


def generate(args: argparse.Namespace) -> None:
    llm = _build(args)
    params = SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.sample_seed,
        stop=args.stop or [],
        ignore_eos=args.ignore_eos,
    )
    for out in llm.generate(args.prompt, params):
        record = {
            "prompt": args.prompt[out.index],
            "text": out.text,
            "token_ids": out.token_ids,
            "finish_reason": out.finish_reason,
        }
        print(json.dumps(record))


def score(args: argparse.Namespace) -> None:
    """Scores each (context, continuation) text pair; the continuation's tokens are what the
    whole text adds to the context's tokens, as lm-eval splits them."""
    if args.file:
        with open(args.file) as f:
            pairs = [(r["context"], r["continuation"]) for r in map(json.loads, f) if r]
    else:
        if len(args.context) != len(args.continuation):
            raise SystemExit("give as many --continuation as --context")
        pairs = list(zip(args.context, args.continuation))
    llm = _build(args)
    requests = []
    for context, continuation in pairs:
        context_ids = llm.tokenizer(context).input_ids
        whole = llm.tokenizer(context + continuation).input_ids
        requests.append((context_ids, whole[len(context_ids) :]))
    for (context, continuation), result in zip(pairs, llm.score(requests)):
        print(
            json.dumps(
                {
                    "context": context,
                    "continuation": continuation,
                    "logprob": result.logprob,
                    "is_greedy": result.is_greedy,
                }
            )
        )


def bench(args: argparse.Namespace) -> None:
    """Measures MODEL (with --compare, interleaved with BASE in rounds, on the same settings) and
    prints a table of the headline rounds, with the speedup's interval over the rounds."""
    import torch

    from engine.config import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    scale = args.scale if args.scale is not None else (CPU_SCALE if resolve_device(args.device).type == "cpu" else 1.0)
    profile = profile.scaled(scale)
    overrides = {
        "num_requests": args.num_requests,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "max_duration_s": args.duration,
    }
    if args.concurrency:
        overrides["concurrency"] = parse_concurrency(args.concurrency)
    profile = dataclasses.replace(profile, **{k: v for k, v in overrides.items() if v is not None})
    options = _llm_options(args)
    if args.compare:
        # interleaved rounds: one run of each can differ by a factor of several on a busy machine
        print(f"{args.compare} and {args.model}, {args.rounds} rounds:", file=sys.stderr)
        results = list(
            compare(
                args.compare, args.model, profile, args.rounds, prompts_file=args.prompts, progress=_progress, **options
            )
        )
        print(file=sys.stderr)
    else:
        print(f"{args.model}:", file=sys.stderr)
        results = [measure(args.model, profile, prompts_file=args.prompts, progress=_progress, **options)]
        print(file=sys.stderr)
    gains = (
        speedup_over_rounds(results[0].metrics, results[1].metrics)
        if len(results) == 2 and all(r.runnable for r in results)
        else None
    )
    if args.records:
        with open(args.records, "w") as f:
            json.dump({r.model: r.records() for r in results}, f)
    if args.json:
        out = {r.model: r.summary() for r in results}
        if gains:
            out["speedup"] = gains
        print(json.dumps(out, indent=2))
    else:
        print(format_table(results))
        if gains:
            print(
                f"output throughput, variant / base over {gains['rounds']} rounds: {gains['output_throughput']['summary']}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate text for one or more prompts (JSON lines out)")
    _engine_args(g)
    g.add_argument("--prompt", action="append", required=True)
    g.add_argument("--max-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--sample-seed", type=int, default=None)
    g.add_argument("--stop", action="append")
    g.add_argument("--ignore-eos", action="store_true")
    g.set_defaults(func=generate)

    s = sub.add_parser("score", help="log-likelihood of continuations given contexts (JSON lines out)")
    _engine_args(s)
    s.add_argument("--context", action="append", default=[])
    s.add_argument("--continuation", action="append", default=[])
    s.add_argument("--file", help="JSON lines with context and continuation fields")
    s.set_defaults(func=score)

    b = sub.add_parser("bench", help="serving benchmark on a workload profile (a table, or JSON)")
    _engine_args(b)
    b.add_argument("--profile", default="chat", help=", ".join(PROFILES))
    b.add_argument("--compare", metavar="BASE_DIR", help="measure this base model too and give model / base ratios")
    b.add_argument(
        "--rounds", type=int, default=3, help="with --compare: base and model interleaved this many times (default 3)"
    )
    b.add_argument(
        "--scale",
        type=float,
        default=None,
        help=f"multiply the profile's lengths and request counts (default {CPU_SCALE:g} on a CPU, 1 on a GPU)",
    )
    b.add_argument("--num-requests", type=int, help="override the profile's requests per run")
    b.add_argument("--input-len", type=int, help="override the profile's prompt length")
    b.add_argument("--output-len", type=int, help="override the profile's output length")
    b.add_argument("--concurrency", help="override the levels, e.g. 1,4,16,max")
    b.add_argument("--duration", type=float, help="end each run after this many seconds")
    b.add_argument("--prompts", help='prompt file: JSON lines with a "prompt" field, or one prompt per line')
    b.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    b.add_argument("--records", help="write every request's timings to this JSON file")
    b.add_argument("--json", action="store_true", help="print JSON instead of the table")
    b.set_defaults(func=bench)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
