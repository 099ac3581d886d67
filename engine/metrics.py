"""The benchmark's numbers, with vLLM's definitions (`vllm bench serve`) so figures compare with
vLLM's and GuideLLM's:

- TTFT: first token time - request start; E2EL: last token time - request start;
- TPOT: (E2EL - TTFT) / (output tokens - 1), per request with more than one output token;
- ITL: every gap between consecutive tokens of a request, pooled over requests;
- mean, std, median, p90, p99 in milliseconds (numpy's linear-interpolated percentiles);
- request, output and total token throughput over the run's wall time, completed requests only;
- max_output_tokens_per_s and max_concurrent_requests over one-second buckets, as vLLM counts them.

Also a variant's speedup over its base, and the comparison table of measurements."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.bench import Measurement


PERCENTILES = (90, 99)
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
THROUGHPUTS = ("request_throughput", "output_throughput", "total_token_throughput")
MEMORY = ("weights_bytes", "kv_capacity_tokens", "peak_memory_bytes")


@dataclass
class RequestRecord:
    index: int
    input_tokens: int
    start: float  # seconds since the run began
    token_times: list[float] = field(default_factory=list)  # seconds since the run began
    finished: bool = False


def summarize(values: list[float]) -> dict[str, float]:
    """mean, std, median and percentiles in milliseconds (values in seconds), as vLLM."""
    if not values:
        return {}
    ms = np.asarray(values, dtype=np.float64) * 1000
    out = {"mean": float(ms.mean()), "std": float(ms.std()), "median": float(np.median(ms))}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(ms, p))
    return out


def compute_metrics(records: list[RequestRecord], duration_s: float) -> dict:
    done = [r for r in records if r.finished and r.token_times]
    ttft = [r.token_times[0] - r.start for r in done]
    e2el = [r.token_times[-1] - r.start for r in done]
    tpot = [(e - f) / (len(r.token_times) - 1) for r, f, e in zip(done, ttft, e2el) if len(r.token_times) > 1]
    itl = [b - a for r in done for a, b in zip(r.token_times, r.token_times[1:])]
    input_tokens = sum(r.input_tokens for r in done)
    output_tokens = sum(len(r.token_times) for r in done)
    metrics = {
        "completed": len(done),
        "incomplete": len(records) - len(done),
        "duration_s": duration_s,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "request_throughput": len(done) / duration_s,
        "output_throughput": output_tokens / duration_s,
        "total_token_throughput": (input_tokens + output_tokens) / duration_s,
        "ttft_ms": summarize(ttft),
        "tpot_ms": summarize(tpot),
        "itl_ms": summarize(itl),
        "e2el_ms": summarize(e2el),
        "max_output_tokens_per_s": 0,
        "max_concurrent_requests": 0,
        # tokens of one step carry the same time
        "max_running_requests": max(Counter(t for r in records for t in r.token_times).values(), default=0),
    }
    if done:
        t0 = min(r.start for r in done)
        buckets = int(np.ceil(max(r.token_times[-1] for r in done) - t0)) + 1
        tokens, running = np.zeros(buckets, dtype=np.int64), np.zeros(buckets, dtype=np.int64)
        for r in done:
            for t in r.token_times:
                tokens[int(t - t0)] += 1
            running[int(r.start - t0) : int(r.token_times[-1] - t0) + 1] += 1
        metrics["max_output_tokens_per_s"] = int(tokens.max())
        metrics["max_concurrent_requests"] = int(running.max())
    return metrics


def speedup(base: dict, variant: dict) -> dict:
    """The variant over the base, each ratio > 1 when the variant is better: throughputs as
    variant / base, median latencies as base / variant; memory as plain variant / base."""

    def ratios(b: dict, v: dict) -> dict:
        out = {k: v[k] / b[k] for k in THROUGHPUTS if b.get(k)}
        for k in LATENCIES:
            if b.get(k) and v.get(k) and v[k]["median"]:
                out[k.replace("_ms", "_median")] = b[k]["median"] / v[k]["median"]
        return out

    out = ratios(base, variant)
    out["memory"] = {k: variant[k] / base[k] for k in MEMORY if base.get(k) and variant.get(k) is not None}
    if "levels" in base and "levels" in variant:
        out["levels"] = [
            {"concurrency": b["concurrency"], **ratios(b, v)} for b, v in zip(base["levels"], variant["levels"])
        ]
    return out


_MEMORY_ROWS = [
    ("weights MiB", lambda m: m.get("weights_bytes", 0) / 2**20, "{:.1f}"),
    ("KV cache capacity tokens", lambda m: m.get("kv_capacity_tokens"), "{:.0f}"),
    ("peak memory MiB", lambda m: m.get("peak_memory_bytes", 0) / 2**20, "{:.1f}"),
]


_ROWS: list[tuple[str, Callable[[dict], float | None], str]] = [
    ("completed requests", lambda m: m.get("completed"), "{:.0f}"),
    ("duration s", lambda m: m.get("duration_s"), "{:.2f}"),
    ("request throughput req/s", lambda m: m.get("request_throughput"), "{:.3f}"),
    ("output token throughput tok/s", lambda m: m.get("output_throughput"), "{:.1f}"),
    ("total token throughput tok/s", lambda m: m.get("total_token_throughput"), "{:.1f}"),
    *[
        (f"{name} {stat} ms", lambda m, k=key, s=stat: m.get(k, {}).get(s), "{:.2f}")
        for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2el_ms", "E2EL"))
        for stat in ("mean", "median", "p90", "p99")
    ],
    ("max concurrent requests", lambda m: m.get("max_concurrent_requests"), "{:.0f}"),
    ("max running requests (engine)", lambda m: m.get("max_running_requests"), "{:.0f}"),
    ("preemptions", lambda m: m.get("preemptions"), "{:.0f}"),
]


def format_table(measurements: "list[Measurement]") -> str:
    """Metrics as rows, models as columns; with two models a last column of second / first."""
    ran = [m for m in measurements if m.runnable]
    lines = [f"{m.model} ({m.scheme}): not runnable here: {m.reason}" for m in measurements if not m.runnable]
    if not ran:
        return "\n".join(lines)
    s = ran[0].settings
    lines.insert(
        0,
        f"profile {s['profile']} v{s['profile_version']} (scale {s['scale']:g}): "
        f"{s['input_len']} tokens in, {s['output_len']} out, {s['device']}, {s.get('dtype', '')}",
    )
    compare = len(ran) == 2
    header = ["metric", *(f"{m.model}" for m in ran)] + (["ratio"] if compare else [])
    levels = [[run.metrics for run in m.runs] for m in ran]
    table = []
    for i in range(len(levels[0])):
        level = levels[0][i]["concurrency"]
        table.append([f"-- concurrency {level}, {levels[0][i]['completed'] + levels[0][i]['incomplete']} requests --"])
        for name, get, fmt in _ROWS:
            table.append(_row(name, [get(lv[i]) for lv in levels], fmt, compare))
    table.append(["-- memory --"])
    for name, get, fmt in _MEMORY_ROWS:
        table.append(_row(name, [get(m.metrics) for m in ran], fmt, compare))
    widths = [max(len(r[c]) for r in [header, *table] if c < len(r) and len(r) > 1) for c in range(len(header))]
    lines.append("  ".join(h.ljust(w) if c == 0 else h.rjust(w) for c, (h, w) in enumerate(zip(header, widths))))
    for r in table:
        lines.append(
            r[0]
            if len(r) == 1
            else "  ".join(x.ljust(w) if c == 0 else x.rjust(w) for c, (x, w) in enumerate(zip(r, widths)))
        )
    return "\n".join(lines)


def _row(name: str, values: list, fmt: str, compare: bool) -> list[str]:
    row = [name, *("-" if v is None else fmt.format(v) for v in values)]
    if compare:
        a, b = values
        row.append(f"{b / a:.2f}x" if a and b is not None else "-")
    return row
