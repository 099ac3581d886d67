"""The benchmark's numbers, with vLLM's definitions (`vllm bench serve`) so figures compare with
vLLM's and GuideLLM's:

- TTFT: first token time - request start; E2EL: last token time - request start;
- TPOT: (E2EL - TTFT) / (output tokens - 1), per request with more than one output token;
- ITL: every gap between consecutive tokens of a request, pooled over requests;
- mean, std, median, p90, p99 in milliseconds (numpy's linear-interpolated percentiles);
- request, output and total token throughput over the run's wall time, completed requests only;
- max_output_tokens_per_s and max_concurrent_requests over one-second buckets, as vLLM counts them.

Also a variant's speedup over its base, with a 95% interval when base and variant were measured
in interleaved rounds, and the comparison table of measurements."""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.bench import Measurement


PERCENTILES = (90, 99)
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
THROUGHPUTS = ("request_throughput", "output_throughput", "total_token_throughput")
MEMORY = ("weights_bytes", "kv_capacity_tokens", "peak_memory_bytes")
# what every runnable benchmark run must carry
REPORTED = (*LATENCIES, *THROUGHPUTS, "max_concurrent_requests", "max_running_requests", "preemptions", *MEMORY)


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


# ---- speedups over rounds -------------------------------------------------------------------
#
# One run of each model can be off by a factor of several on a shared machine (a base measured
# once while something else ran looked 3x slower than its variant). The benchmark runs base and
# variant in interleaved rounds; each round gives one ratio per figure, and a speedup is shown as
# the median of those ratios with a 95% interval. The interval is Student's t on the logarithms of
# the ratios (a ratio's noise is multiplicative), which stays honest with 3 to 10 rounds: few
# rounds or scattered ones widen it through t's quantile and the sample spread, where a bootstrap
# over 3 values could never be wider than their range.

CONFIDENCE = 0.95
# rounds whose ratios lie further apart than this (max / min) say more about the machine than
# about the model, whatever the interval says
MAX_SPREAD = 1.5
INTERVAL_METHOD = "median of per-round ratios; 95% Student-t interval on their logarithms"
FASTER, SLOWER, INCONCLUSIVE, ONE_ROUND = "faster", "slower", "inconclusive", "one round"
# two-sided 95% quantiles of Student's t by degrees of freedom; between rows the smaller degrees
# of freedom (a wider interval) is taken
_T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip


def _t95(df: int) -> float:
    return _T95[max(k for k in _T95 if k <= df)]


def ratio_interval(ratios: Sequence[float]) -> dict:
    """The median of per-round ratios (> 1: the variant is better), its 95% interval, the rounds'
    spread (max / min), and a verdict: faster or slower when the interval excludes 1 and the
    rounds agree within MAX_SPREAD, else inconclusive; one ratio is one round, no interval."""
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) == 0 or not np.all(r > 0):
        raise ValueError(f"ratios must be positive, got {list(ratios)}")
    median = float(np.median(r))
    spread = float(r.max() / r.min())
    if len(r) == 1:
        low = high = median
        verdict = ONE_ROUND
    else:
        logs = np.log(r)
        half = _t95(len(r) - 1) * logs.std(ddof=1) / np.sqrt(len(r))
        low, high = float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))
        if low <= 1 <= high or spread > MAX_SPREAD:
            verdict = INCONCLUSIVE
        else:
            verdict = FASTER if low > 1 else SLOWER
    out = {"median": median, "low": low, "high": high, "spread": spread, "ratios": r.tolist(), "verdict": verdict}
    out["summary"] = describe(out)
    return out


def describe(interval: dict) -> str:
    """'1.42x (95% interval 1.31-1.55)', or why no figure stands: 'inconclusive on this machine:
    interval 0.80-3.10 includes 1'."""
    median, low, high = interval["median"], interval["low"], interval["high"]
    if interval["verdict"] == ONE_ROUND:
        return f"{median:.2f}x (one round)"
    if interval["verdict"] != INCONCLUSIVE:
        return f"{median:.2f}x (95% interval {low:.2f}-{high:.2f})"
    if low <= 1 <= high:
        return f"inconclusive on this machine: interval {low:.2f}-{high:.2f} includes 1"
    ratios = interval["ratios"]
    return (
        f"inconclusive on this machine: rounds range {min(ratios):.2f}-{max(ratios):.2f}, "
        f"more than {MAX_SPREAD:g}x apart"
    )


def speedup_over_rounds(base: dict, variant: dict) -> dict:
    """`speedup`'s ratios, each computed per round (round i of the base against round i of the
    variant, which ran the same prompts next to it) and given as `ratio_interval`s; memory as
    `speedup` gives it. Metrics without rounds count as one round."""
    pairs = list(zip(base.get("rounds") or [base], variant.get("rounds") or [variant]))
    per_round = [speedup(b, v) for b, v in pairs]

    def intervals(rows: list[dict]) -> dict:
        # a ratio missing or zero in some round (nothing completed in it) has no interval
        keys = [k for k in rows[0] if k not in ("memory", "levels", "concurrency") and all(row.get(k) for row in rows)]
        return {k: ratio_interval([row[k] for row in rows]) for k in keys}

    out = intervals(per_round)
    out["memory"] = speedup(base, variant)["memory"]
    if all("levels" in row for row in per_round):
        out["levels"] = [
            {"concurrency": level[0]["concurrency"], **intervals(list(level))}
            for level in zip(*(row["levels"] for row in per_round))
        ]
    out["rounds"] = len(pairs)
    out["method"] = INTERVAL_METHOD
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
    levels = [[run.metrics for run in m.headline_runs] for m in ran]
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
