"""Offline serving benchmark on the engine, with vLLM's metric definitions (`vllm bench serve`)
so figures compare with vLLM's and GuideLLM's:

- TTFT: first token time - request start; E2EL: last token time - request start;
- TPOT: (E2EL - TTFT) / (output tokens - 1), per request with more than one output token;
- ITL: every gap between consecutive tokens of a request, pooled over requests;
- mean, std, median, p90, p99 in milliseconds (numpy's linear-interpolated percentiles);
- request, output and total token throughput over the run's wall time, completed requests only;
- max_output_tokens_per_s and max_concurrent_requests over one-second buckets, as vLLM counts them.

A request starts when its client would send it: at the run's start, or, with a concurrency
limit N, when the request whose slot it takes finishes (the engine holds at most N running,
admitted first come first served, so the two coincide). `max_running_requests` is the engine's
view: the most requests given a token in one step.
"""

import ctypes
import gc
import json
import os
import platform
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from itertools import accumulate
from pathlib import Path

import numpy as np
import torch

from engine.config import ModelConfig, UnsupportedModelError, resolve_device
from engine.llm import LLM, Cancelled, CancelledError, Progress
from engine.profiles import Profile
from engine.sampling_params import SamplingParams

PERCENTILES = (90, 99)
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
THROUGHPUTS = ("request_throughput", "output_throughput", "total_token_throughput")
MEMORY = ("weights_bytes", "kv_capacity_tokens", "peak_memory_bytes")
_WARMUP_SEED = 1 << 20  # warm-up prompts come from their own seed: no prefix-cache hits later


@dataclass(frozen=True)
class Workload:
    num_requests: int = 64
    input_len: int = 128
    output_len: int = 64
    seed: int = 0
    concurrency: int | None = None  # requests in flight at most; None: all at once
    max_duration_s: float | None = None


def _vocabulary(llm: LLM) -> list[int]:
    """Ids a synthetic prompt may use: the tokenizer's ordinary tokens when the checkpoint has
    a tokenizer (vLLM's random dataset draws from it), else the config's vocabulary."""
    m = llm.config.model
    special = set(m.eos_token_ids) | {m.bos_token_id}
    size = m.vocab_size
    if llm._has_tokenizer:
        size = min(size, len(llm.tokenizer))
        special |= set(llm.tokenizer.all_special_ids)
    return [t for t in range(size) if t not in special]


def random_prompts(llm: LLM, workload: Workload) -> list[list[int]]:
    rng = random.Random(workload.seed)
    vocab = _vocabulary(llm)
    return [rng.choices(vocab, k=workload.input_len) for _ in range(workload.num_requests)]


def read_prompt_file(path: Path | str, llm: LLM) -> list[list[int]]:
    """A user's prompts: JSON lines with a "prompt" (or "text") field, or plain text with one
    prompt per line; tokenized with the model's tokenizer."""
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if path.suffix in (".jsonl", ".json"):
        texts = []
        for n, line in enumerate(lines, 1):
            record = json.loads(line)
            text = record.get("prompt", record.get("text")) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{n}: each line needs a \"prompt\" (or \"text\") string")
            texts.append(text)
    else:
        texts = lines
    if not texts:
        raise ValueError(f"{path} holds no prompts")
    return [llm.tokenizer(t).input_ids for t in texts]


# ---- metrics ---------------------------------------------------------------------------------


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


# ---- running ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    workload: Workload
    records: list[RequestRecord]
    metrics: dict

    def to_dict(self) -> dict:
        return {"workload": asdict(self.workload), "metrics": self.metrics,
                "records": [asdict(r) for r in self.records]}


def run_workload(
    llm: LLM,
    workload: Workload,
    prompts: list[list[int]] | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> RunResult:
    """Sends the workload's requests (random ones unless `prompts` are given), greedy with
    exactly `output_len` tokens each, and measures them."""
    if prompts is None:
        prompts = random_prompts(llm, workload)
    _check_fits(llm, prompts, workload.output_len)
    params = SamplingParams(max_tokens=workload.output_len, temperature=0, ignore_eos=True)
    records = [RequestRecord(i, len(p), 0.0) for i, p in enumerate(prompts)]
    slots = workload.concurrency
    preemptions = llm.stats.preemptions
    deadline = None
    finishes: list[float] = []

    def stop() -> bool:
        return (cancelled is not None and cancelled()) or (deadline is not None and time.monotonic() > deadline)

    # The engine admits waiting requests first come first served while fewer than max_num_seqs
    # run: capping that at N keeps N in flight, as N clients each waiting for their last reply.
    max_num_seqs = llm.scheduler.max_num_seqs
    if slots is not None:
        llm.scheduler.max_num_seqs = min(slots, max_num_seqs)
    start = time.monotonic()
    if workload.max_duration_s is not None:
        deadline = start + workload.max_duration_s
    try:
        for event in llm.stream(prompts, params, cancelled=stop):
            t = event.time - start
            records[event.index].token_times.append(t)
            if event.finished:
                records[event.index].finished = True
                finishes.append(t)
                if slots is not None and slots - 1 + len(finishes) < len(records):
                    records[slots - 1 + len(finishes)].start = t
                if progress is not None:
                    progress(len(finishes) / len(records), f"{len(finishes)}/{len(records)} requests done")
    except CancelledError:
        if cancelled is not None and cancelled():
            raise
        # the duration ran out: what has not finished is incomplete
    finally:
        llm.scheduler.max_num_seqs = max_num_seqs
    duration = time.monotonic() - start
    metrics = compute_metrics(records, duration)
    metrics["concurrency"] = "max" if slots is None else slots
    metrics["preemptions"] = llm.stats.preemptions - preemptions
    return RunResult(workload, records, metrics)


def _check_fits(llm: LLM, prompts: list[list[int]], output_len: int) -> None:
    limit = llm.config.max_model_len
    longest = max(map(len, prompts))
    if longest + output_len > limit:
        raise ValueError(
            f"a request of {longest} prompt + {output_len} output tokens exceeds the model's "
            f"max_model_len {limit}; choose a smaller profile or scale"
        )


def warm_up(llm: LLM, workload: Workload) -> None:
    """A few short requests first, so one-time costs (kernel compilation, first allocations)
    stay out of the measured run."""
    warm = replace(workload, num_requests=min(8, workload.num_requests), seed=_WARMUP_SEED + workload.seed)
    llm.generate(random_prompts(llm, warm), SamplingParams(max_tokens=min(8, workload.output_len), temperature=0, ignore_eos=True))


# ---- hardware --------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _load_average() -> float | None:
    """The system's 1-minute load average (runnable processes), None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe_hardware(device: str | torch.device = "auto") -> dict:
    dev = resolve_device(device)
    hw = {
        "device": dev.type,
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "memory_bytes": _total_memory(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        hw.update(
            gpu_name=props.name,
            gpu_memory_bytes=props.total_memory,
            compute_capability=f"{props.major}.{props.minor}",
            driver=_nvidia_driver(),
            cuda=torch.version.cuda,
        )
    return hw


def min_compute_capability(scheme: str) -> float | None:
    """The lowest CUDA compute capability on which the engine runs `scheme` (a compression
    scheme summary such as "FP8_DYNAMIC", "2:4 + W4A16"); None when any GPU does. FP8 matmuls
    need Ada/Hopper tensor cores, 2:4 sparse ones Ampere's."""
    needs = [None]
    if "FP8" in scheme.upper():
        needs.append(8.9)
    if "2:4" in scheme:
        needs.append(8.0)
    return max((n for n in needs if n is not None), default=None)


def unrunnable_reason(scheme: str, hardware: dict) -> str | None:
    """Why the hardware cannot run the scheme, or None. On a CPU every scheme runs, through the
    kernels' reference twins."""
    need = min_compute_capability(scheme)
    if hardware.get("device") != "cuda" or need is None:
        return None
    have = float(hardware["compute_capability"])
    if have < need:
        return f"{scheme} needs compute capability {need} or higher; {hardware['gpu_name']} is {have}"
    return None


def scheme_of(model_dir: Path | str) -> str:
    """A checkpoint's compression scheme: the compression report's summary when there is one
    (it alone records 2:4 sparsity), else read from config.json's quantization_config."""
    model_dir = Path(model_dir)
    report = model_dir / "compression_report.json"
    if report.is_file():
        scheme = json.loads(report.read_text()).get("scheme")
        if scheme:
            return scheme
    quant = ModelConfig.from_pretrained(model_dir).quantization
    if not quant:
        return "dense"
    names = set()
    for group in (quant.get("config_groups") or {}).values():
        w, a = group.get("weights") or {}, group.get("input_activations") or {}
        if w.get("type") == "float":
            names.add(f"FP{w.get('num_bits')}")
        else:
            names.add(f"W{w.get('num_bits')}A{a.get('num_bits', 16)}")
    return " + ".join(sorted(names)) or str(quant.get("quant_method", "quantized"))


# ---- one model on one profile ----------------------------------------------------------------


@dataclass
class Measurement:
    model: str
    scheme: str
    runnable: bool
    reason: str  # why not runnable
    settings: dict  # the workload and engine settings: equal for base and variant
    metrics: dict  # the headline run's metrics (the last level), memory, and each level's
    runs: list[RunResult] = field(default_factory=list)

    def records(self) -> list[dict]:
        """Every request of every level, for the raw record file."""
        return [
            {"concurrency": run.metrics["concurrency"], **asdict(r)}
            for run in self.runs for r in run.records
        ]


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_memory(device: torch.device) -> int:
    """Starts a peak measurement; returns the memory in use now, which the peak is counted above."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return 0  # max_memory_allocated counts tensors only: nothing of the process before them
    try:
        # hand memory freed by an earlier model back to the system, or the next one would reuse
        # it without its resident size growing
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        # resets the process's peak resident set size to the current one (Linux 4.0+)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 0
    return _status_bytes("VmRSS") or 0


def _load_tokenizer_libraries(model_dir: Path) -> None:
    """Loading the first tokenizer imports ~70 MB of libraries for good: done before the peak
    is reset, so the first model measured in a process is not charged for them."""
    if any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_dir)


def _peak_memory(device: torch.device, before: int) -> tuple[int | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    peak = _status_bytes("VmHWM")
    if peak is None or not before:
        return None, "not measurable here (needs Linux /proc/self/clear_refs)"
    return peak - before, "process peak resident set size above the size before loading the model"


def measure(
    model_dir: Path | str,
    profile: Profile,
    *,
    name: str | None = None,
    scheme: str | None = None,
    prompts_file: Path | str | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
    **llm_options,
) -> Measurement:
    """Loads the model, runs every concurrency level of the profile, and frees the model. A
    scheme the hardware (or this engine) cannot run comes back not runnable, with the reason.
    `name` labels the model (default: its folder's name)."""
    model_dir = Path(model_dir)
    name = name or model_dir.name
    scheme = scheme or scheme_of(model_dir)
    device = resolve_device(llm_options.get("device", "auto"))
    settings = {**profile.settings(), "device": device.type, "seed": llm_options.get("seed", 0),
                "prompts": f"file {Path(prompts_file).name}" if prompts_file else "random tokens"}
    reason = unrunnable_reason(scheme, describe_hardware(device))
    if reason:
        return Measurement(name, scheme, False, reason, settings, {})
    _load_tokenizer_libraries(model_dir)
    before = _reset_peak_memory(device)
    try:
        llm = LLM(model_dir, **llm_options)
    except UnsupportedModelError as exc:
        return Measurement(name, scheme, False, str(exc), settings, {})
    try:
        c = llm.config
        settings.update(dtype=str(c.dtype).removeprefix("torch."), block_size=c.block_size, max_num_seqs=c.max_num_seqs,
                        max_num_batched_tokens=c.max_num_batched_tokens, max_model_len=c.max_model_len,
                        prefix_caching=c.enable_prefix_caching, torch_threads=torch.get_num_threads())
        file_prompts = read_prompt_file(prompts_file, llm) if prompts_file else None
        levels = profile.concurrency
        workloads = [
            Workload(profile.requests_at(level), profile.input_len, profile.output_len, seed=settings["seed"] + i,
                     concurrency=level, max_duration_s=profile.max_duration_s)
            for i, level in enumerate(levels)
        ]
        if file_prompts:  # each level takes the next prompts of the file, round the end
            ends = [0, *accumulate(w.num_requests for w in workloads)]
            prompts = [[file_prompts[k % len(file_prompts)] for k in range(a, b)] for a, b in zip(ends, ends[1:])]
        else:
            prompts = [random_prompts(llm, w) for w in workloads]
        for w, p in zip(workloads, prompts):
            _check_fits(llm, p, w.output_len)  # before any work
        warm_up(llm, max(workloads, key=lambda w: w.num_requests))
        load_start = _load_average()
        runs = []
        for i, (level, workload) in enumerate(zip(levels, workloads)):
            step = (lambda done, msg, i=i, level=level: progress(
                (i + done) / len(levels), f"concurrency {'max' if level is None else level}: {msg}")) if progress else None
            runs.append(run_workload(llm, workload, prompts[i], progress=step, cancelled=cancelled))
        peak, peak_kind = _peak_memory(device, before)
        metrics = {
            **runs[-1].metrics,
            "weights_bytes": llm.weights_bytes,
            "kv_capacity_tokens": llm.kv_capacity_tokens,
            "peak_memory_bytes": peak,
            "peak_memory_kind": peak_kind,
            # other work on the machine slows a run on the CPU without a trace in its figures
            "load_average": [load_start, _load_average()],
        }
        if len(runs) > 1:
            metrics["levels"] = [run.metrics for run in runs]
        return Measurement(name, scheme, True, "", settings, metrics, runs)
    finally:
        del llm
        gc.collect()


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
        out["levels"] = [{"concurrency": b["concurrency"], **ratios(b, v)} for b, v in zip(base["levels"], variant["levels"])]
    return out


# ---- the table -------------------------------------------------------------------------------

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
_MEMORY_ROWS = [
    ("weights MiB", lambda m: m.get("weights_bytes", 0) / 2**20, "{:.1f}"),
    ("KV cache capacity tokens", lambda m: m.get("kv_capacity_tokens"), "{:.0f}"),
    ("peak memory MiB", lambda m: m.get("peak_memory_bytes", 0) / 2**20, "{:.1f}"),
]


def format_table(measurements: list[Measurement]) -> str:
    """Metrics as rows, models as columns; with two models a last column of second / first."""
    ran = [m for m in measurements if m.runnable]
    lines = [f"{m.model} ({m.scheme}): not runnable here: {m.reason}" for m in measurements if not m.runnable]
    if not ran:
        return "\n".join(lines)
    s = ran[0].settings
    lines.insert(0, f"profile {s['profile']} v{s['profile_version']} (scale {s['scale']:g}): "
                    f"{s['input_len']} tokens in, {s['output_len']} out, {s['device']}, {s.get('dtype', '')}")
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
        lines.append(r[0] if len(r) == 1 else "  ".join(x.ljust(w) if c == 0 else x.rjust(w) for c, (x, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _row(name: str, values: list, fmt: str, compare: bool) -> list[str]:
    row = [name, *("-" if v is None else fmt.format(v) for v in values)]
    if compare:
        a, b = values
        row.append(f"{b / a:.2f}x" if a and b is not None else "-")
    return row
