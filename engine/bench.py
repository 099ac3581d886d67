"""Offline serving benchmark on the engine: workloads (random or file prompts, warm-up), one run
of a workload with every token's time stamped, `measure`, which loads a model and runs a
profile's levels on it, and `compare`, which runs a base and a variant interleaved in rounds.
A request starts when its client would send it: at the run's start, or, with a concurrency
limit N, when the request whose slot it takes finishes (the engine holds at most N running,
admitted first come first served, so the two coincide). `max_running_requests` is the engine's
view: the most requests given a token in one step. The numbers are computed by engine.metrics,
the hardware described by engine.hardware.
"""

import gc
import json
import os
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
from engine.llm import _CPU_KV_CACHE_MEMORY, LLM
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
    round: int = 0

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
    # the headline round's metrics (its last level), memory, each level's, and with several
    # rounds each round's ("rounds") and which one is the headline ("headline_round")
    metrics: dict
    runs: list[RunResult] = field(default_factory=list)  # every level of every round

    @property
    def headline_runs(self) -> list[RunResult]:
        return [run for run in self.runs if run.round == self.metrics.get("headline_round", 0)]

    def summary(self) -> dict:
        """What a JSON report shows of one model: everything but its name and raw records."""
        return {
            "scheme": self.scheme,
            "runnable": self.runnable,
            "reason": self.reason,
            "settings": self.settings,
            "metrics": self.metrics,
        }

    def records(self) -> list[dict]:
        """Every request of every level and round, for the raw record file."""
        return [
            {"round": run.round, "concurrency": run.metrics["concurrency"], **asdict(r)}
            for run in self.runs
            for r in run.records
        ]


def _load_tokenizer_libraries(model_dir: Path) -> None:
    """Loading the first tokenizer imports ~70 MB of libraries for good: done before the peak
    is reset, so the first model measured in a process is not charged for them."""
    if any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_dir)


class Bench:
    """One model on one profile, measured in rounds: round r sends fresh prompts (seeds offset by
    r), the same for every model measured with the same round numbers. The model may be loaded
    once for all rounds or loaded and freed around each (`load`, `unload`); memory is measured
    from the first load through the first round."""

    def __init__(
        self,
        model_dir: Path | str,
        profile: Profile,
        *,
        name: str | None = None,
        scheme: str | None = None,
        prompts_file: Path | str | None = None,
        **llm_options,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.profile = profile
        self.name = name or self.model_dir.name
        self.scheme = scheme or scheme_of(self.model_dir)
        self.prompts_file = prompts_file
        self.llm_options = llm_options
        self.device = resolve_device(llm_options.get("device", "auto"))
        self.settings = {
            **profile.settings(),
            "device": self.device.type,
            "seed": llm_options.get("seed", 0),
            "prompts": f"file {Path(prompts_file).name}" if prompts_file else "random tokens",
        }
        self.reason = unrunnable_reason(self.scheme, describe_hardware(self.device)) or ""
        self.llm: LLM | None = None
        self.rounds: list[dict] = []
        self.runs: list[RunResult] = []
        self.memory: dict = {}
        self._before: int | None = None
        self._file_prompts: list[list[int]] | None = None
        # the next round's workloads and prompts, made once: load() checks them, run_round() runs them
        self._work: tuple[int, list[Workload], list[list[list[int]]]] | None = None

    def load(self) -> bool:
        """Loads the model unless it is loaded; False when it cannot run here (see `reason`)."""
        if self.llm is not None:
            return True
        if self.reason:
            return False
        _load_tokenizer_libraries(self.model_dir)
        before = reset_peak_memory(self.device)
        if not self.memory:
            self._before = before
        try:
            self.llm = LLM(self.model_dir, **self.llm_options)
        except UnsupportedModelError as exc:
            self.reason = str(exc)
            return False
        c = self.llm.config
        self.settings.update(
            dtype=str(c.dtype).removeprefix("torch."),
            kv_cache_dtype=str(c.kv_cache_dtype).removeprefix("torch."),
            block_size=c.block_size,
            max_num_seqs=c.max_num_seqs,
            max_num_batched_tokens=c.max_num_batched_tokens,
            max_model_len=c.max_model_len,
            prefix_caching=c.enable_prefix_caching,
            torch_threads=torch.get_num_threads(),
        )
        if self.prompts_file and self._file_prompts is None:
            self._file_prompts = read_prompt_file(self.prompts_file, self.llm)
        workloads, prompts = self._round_work(len(self.rounds))
        for w, p in zip(workloads, prompts):
            _check_fits(self.llm, p, w.output_len)  # before any work
        warm_up(self.llm, max(workloads, key=lambda w: w.num_requests))
        return True

    def unload(self) -> None:
        if self.llm is not None:
            self.llm = None
            gc.collect()

    def _round_work(self, r: int) -> tuple[list[Workload], list[list[list[int]]]]:
        """Round r's workload and prompts per level: random prompts from seeds no other round or
        level uses, or the file's prompts continuing where round r - 1 stopped."""
        if self._work is not None and self._work[0] == r:
            return self._work[1], self._work[2]
        p, levels = self.profile, self.profile.concurrency
        seed = self.settings["seed"] + r * len(levels)
        workloads = [
            Workload(p.requests_at(level), p.input_len, p.output_len, seed + i, level, p.max_duration_s)
            for i, level in enumerate(levels)
        ]
        if self._file_prompts:  # each level takes the next prompts of the file, round the end
            n = len(self._file_prompts)
            ends = [r * sum(w.num_requests for w in workloads)]
            ends += [ends[0] + e for e in accumulate(w.num_requests for w in workloads)]
            prompts = [[self._file_prompts[k % n] for k in range(a, b)] for a, b in zip(ends, ends[1:])]
        else:
            prompts = [random_prompts(self.llm, w) for w in workloads]
        self._work = (r, workloads, prompts)
        return workloads, prompts

    def run_round(self, progress: Progress | None = None, cancelled: CancelCheck | None = None) -> dict:
        """Runs the next round's levels on the loaded model; returns the round's metrics."""
        assert self.llm is not None, "load() first"
        r = len(self.rounds)
        workloads, prompts = self._round_work(r)
        for w, p in zip(workloads, prompts):
            _check_fits(self.llm, p, w.output_len)
        levels = self.profile.concurrency
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
            run = run_workload(self.llm, workload, prompts[i], progress=step, cancelled=cancelled)
            runs.append(replace(run, round=r))
        if not self.memory:
            peak, peak_kind = peak_memory(self.device, self._before or 0)
            self.memory = {
                "weights_bytes": self.llm.weights_bytes,
                "kv_capacity_tokens": self.llm.kv_capacity_tokens,
                "peak_memory_bytes": peak,
                "peak_memory_kind": peak_kind,
            }
        metrics = {
            "round": r,
            "seed": workloads[0].seed,
            **runs[-1].metrics,
            # other work on the machine slows a run on the CPU without a trace in its figures
            "load_average": [load_start, load_average()],
        }
        if len(runs) > 1:
            metrics["levels"] = [run.metrics for run in runs]
        self.rounds.append(metrics)
        self.runs += runs
        return metrics

    def result(self) -> Measurement:
        """The measurement so far. With several rounds the headline is the round of median
        output throughput (the lower middle one of an even count): a round that ran, not an
        average of rounds, and not the one a burst of load fell on."""
        if not self.rounds:
            return Measurement(self.name, self.scheme, False, self.reason or "not measured", self.settings, {})
        by_speed = sorted(self.rounds, key=lambda m: m["output_throughput"])
        headline = by_speed[(len(by_speed) - 1) // 2]
        metrics = {k: v for k, v in headline.items() if k not in ("round", "seed")}
        metrics.update(self.memory, load_average=[x for m in self.rounds for x in m["load_average"]])
        if len(self.rounds) > 1:
            metrics.update(headline_round=headline["round"], rounds=self.rounds)
        return Measurement(self.name, self.scheme, True, "", self.settings, metrics, self.runs)


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
    """Loads the model, runs every concurrency level of the profile once, and frees the model. A
    scheme the hardware (or this engine) cannot run comes back not runnable, with the reason.
    `name` labels the model (default: its folder's name)."""
    bench = Bench(model_dir, profile, name=name, scheme=scheme, prompts_file=prompts_file, **llm_options)
    try:
        if bench.load():
            bench.run_round(progress, cancelled)
        return bench.result()
    finally:
        bench.unload()


def _fit_together(*model_dirs: Path | str) -> bool:
    """Whether the models, weights and KV caches, take at most half the machine's memory on a
    CPU: weights count twice their files' size (bfloat16 checkpoints compute in float32 there),
    each KV cache its whole CPU budget."""
    files = sum(f.stat().st_size for d in model_dirs for f in Path(d).glob("*.safetensors"))
    need = 2 * files + len(model_dirs) * _CPU_KV_CACHE_MEMORY
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return False
    return need <= total // 2


def compare(
    base_dir: Path | str,
    variant_dir: Path | str,
    profile: Profile,
    rounds: int,
    *,
    base_name: str | None = None,
    variant_name: str | None = None,
    variant_scheme: str | None = None,
    prompts_file: Path | str | None = None,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    **llm_options,
) -> tuple[Measurement, Measurement]:
    """The base and the variant in interleaved rounds, base then variant, `rounds` times: round r
    sends both the same fresh prompts, so load that comes and goes on the machine falls on a
    round of each rather than on one whole model, and shows as rounds that disagree.

    The variant computes in the dtype the base ran in. On a CPU both models stay loaded through
    every round when they fit in half the machine's memory (the engine gives each a KV cache of
    at most 1 GiB there). On a GPU the engine gives one model's KV cache all the free memory, so
    there, as on a CPU too small for both, each model is loaded and freed around each of its
    rounds and warmed up again each time. A variant that cannot run ends the comparison after
    the base's first round."""
    keep = resolve_device(llm_options.get("device", "auto")).type == "cpu" and _fit_together(base_dir, variant_dir)
    base = Bench(base_dir, profile, name=base_name, prompts_file=prompts_file, **llm_options)
    base.settings["rounds"] = rounds
    variant: Bench | None = None
    steps = 2 * rounds

    def part(k: int, label: str) -> Progress | None:
        if progress is None:
            return None
        return lambda done, msg: progress((k + done) / steps, f"{label} round {k // 2 + 1}/{rounds}: {msg}")

    try:
        for r in range(rounds):
            if not base.load():
                break
            base.run_round(part(2 * r, "base"), cancelled)
            if not keep:
                base.unload()
            if variant is None:
                options = {**llm_options, "dtype": base.settings["dtype"]}
                variant = Bench(
                    variant_dir,
                    profile,
                    name=variant_name,
                    scheme=variant_scheme,
                    prompts_file=prompts_file,
                    **options,
                )
                variant.settings["rounds"] = rounds
            if not variant.load():
                break
            variant.run_round(part(2 * r + 1, "variant"), cancelled)
            if not keep:
                variant.unload()
    finally:
        base.unload()
        if variant is not None:
            variant.unload()
    if variant is None:
        name = variant_name or Path(variant_dir).name
        return base.result(), Measurement(name, variant_scheme or "", False, "the base did not run", {}, {})
    return base.result(), variant.result()


# ---- the table -------------------------------------------------------------------------------
