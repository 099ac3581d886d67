"""Offline serving benchmark on the engine: workloads (random or file prompts, warm-up), one run
of a workload with every token's time stamped, and `measure`, which loads a model and runs a
profile's levels on it. A request starts when its client would send it: at the run's start, or,
with a concurrency limit N, when the request whose slot it takes finishes (the engine holds at
most N running, admitted first come first served, so the two coincide). `max_running_requests`
is the engine's view: the most requests given a token in one step. The numbers are computed by
engine.metrics, the hardware described by engine.hardware.
"""

import gc
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import accumulate
from pathlib import Path

import torch

from common.work import CancelCheck, Cancelled, Progress
from engine.config import UnsupportedModelError, resolve_device
from engine.hardware import (
    describe_hardware,
    load_average,
    peak_memory,
    reset_peak_memory,
    scheme_of,
    unrunnable_reason,
)
from engine.llm import LLM
from engine.metrics import RequestRecord, compute_metrics
from engine.profiles import Profile
from engine.sampling_params import SamplingParams

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
                raise ValueError(f'{path}:{n}: each line needs a "prompt" (or "text") string')
            texts.append(text)
    else:
        texts = lines
    if not texts:
        raise ValueError(f"{path} holds no prompts")
    return [llm.tokenizer(t).input_ids for t in texts]


# ---- metrics ---------------------------------------------------------------------------------


# ---- running ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    workload: Workload
    records: list[RequestRecord]
    metrics: dict

    def to_dict(self) -> dict:
        return {
            "workload": asdict(self.workload),
            "metrics": self.metrics,
            "records": [asdict(r) for r in self.records],
        }


def run_workload(
    llm: LLM,
    workload: Workload,
    prompts: list[list[int]] | None = None,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
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
    except Cancelled:
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
    llm.generate(
        random_prompts(llm, warm),
        SamplingParams(max_tokens=min(8, workload.output_len), temperature=0, ignore_eos=True),
    )


# ---- hardware --------------------------------------------------------------------------------


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
        return [{"concurrency": run.metrics["concurrency"], **asdict(r)} for run in self.runs for r in run.records]


def _load_tokenizer_libraries(model_dir: Path) -> None:
    """Loading the first tokenizer imports ~70 MB of libraries for good: done before the peak
    is reset, so the first model measured in a process is not charged for them."""
    if any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_dir)


def measure(
    model_dir: Path | str,
    profile: Profile,
    *,
    name: str | None = None,
    scheme: str | None = None,
    prompts_file: Path | str | None = None,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    **llm_options,
) -> Measurement:
    """Loads the model, runs every concurrency level of the profile, and frees the model. A
    scheme the hardware (or this engine) cannot run comes back not runnable, with the reason.
    `name` labels the model (default: its folder's name)."""
    model_dir = Path(model_dir)
    name = name or model_dir.name
    scheme = scheme or scheme_of(model_dir)
    device = resolve_device(llm_options.get("device", "auto"))
    settings = {
        **profile.settings(),
        "device": device.type,
        "seed": llm_options.get("seed", 0),
        "prompts": f"file {Path(prompts_file).name}" if prompts_file else "random tokens",
    }
    reason = unrunnable_reason(scheme, describe_hardware(device))
    if reason:
        return Measurement(name, scheme, False, reason, settings, {})
    _load_tokenizer_libraries(model_dir)
    before = reset_peak_memory(device)
    try:
        llm = LLM(model_dir, **llm_options)
    except UnsupportedModelError as exc:
        return Measurement(name, scheme, False, str(exc), settings, {})
    try:
        c = llm.config
        settings.update(
            dtype=str(c.dtype).removeprefix("torch."),
            block_size=c.block_size,
            max_num_seqs=c.max_num_seqs,
            max_num_batched_tokens=c.max_num_batched_tokens,
            max_model_len=c.max_model_len,
            prefix_caching=c.enable_prefix_caching,
            torch_threads=torch.get_num_threads(),
        )
        file_prompts = read_prompt_file(prompts_file, llm) if prompts_file else None
        levels = profile.concurrency
        workloads = [
            Workload(
                profile.requests_at(level),
                profile.input_len,
                profile.output_len,
                seed=settings["seed"] + i,
                concurrency=level,
                max_duration_s=profile.max_duration_s,
            )
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
        load_start = load_average()
        runs = []
        for i, (level, workload) in enumerate(zip(levels, workloads)):
            step = (
                (
                    lambda done, msg, i=i, level=level: progress(
                        (i + done) / len(levels), f"concurrency {'max' if level is None else level}: {msg}"
                    )
                )
                if progress
                else None
            )
            runs.append(run_workload(llm, workload, prompts[i], progress=step, cancelled=cancelled))
        peak, peak_kind = peak_memory(device, before)
        metrics = {
            **runs[-1].metrics,
            "weights_bytes": llm.weights_bytes,
            "kv_capacity_tokens": llm.kv_capacity_tokens,
            "peak_memory_bytes": peak,
            "peak_memory_kind": peak_kind,
            # other work on the machine slows a run on the CPU without a trace in its figures
            "load_average": [load_start, load_average()],
        }
        if len(runs) > 1:
            metrics["levels"] = [run.metrics for run in runs]
        return Measurement(name, scheme, True, "", settings, metrics, runs)
    finally:
        del llm
        gc.collect()


# ---- the table -------------------------------------------------------------------------------
