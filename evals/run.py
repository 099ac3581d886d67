"""Run a suite on a checkpoint through lm-eval and our engine; save and load the results.

`prepare` fixes everything that decides the numbers (the settings) before any weight is
loaded, so a caller can look for an earlier run with the same `settings_key` and skip the work;
`run` evaluates. Results keep lm-eval's full results JSON and its per-sample logs, the inputs of
the paired statistics in `evals.recovery`.
"""

import gzip
import hashlib
import json
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from common.checkpoint_files import check_checkpoint_folder
from common.work import CancelCheck, Cancelled, Progress
from evals.store import RequestStore
from evals.suites import Suite, SuiteError, get_suite
from evals.tasks import BuiltTask, build_all

ROOT = Path(__file__).resolve().parent.parent
# what feeds the engine's numbers: a change here is a different engine for the comparison rule


@dataclass(frozen=True)
class EvalOptions:
    # local task data (<dir>/<task>/<split>.jsonl ...); None: the Hugging Face hub
    data_dir: Path | None = None
    dtype: str = "auto"
    device: str = "auto"
    # None: as the tokenizer does by default (lm-eval's `hf` backend does the same)
    add_bos_token: bool | None = None
    # apply the tokenizer's chat template (few-shot examples as turns) to every task, whatever
    # the suite says; False: to the tasks whose spec asks for it
    chat_template: bool = False
    max_model_len: int | None = None
    # KV-cache block size; None: 1 on a CPU, where a choice's score then reuses its question's
    # cache to the token (a third fewer tokens computed on ARC-like tasks than with 16-token
    # blocks), and the engine's default on a GPU
    block_size: int | None = None
    # lm-eval's bootstrap for the stderr of metrics that are not means (0: none)
    bootstrap_iters: int = 1000


@dataclass
class Plan:
    model_dir: Path
    suite: Suite
    options: EvalOptions
    tasks: list[BuiltTask]
    settings: dict
    settings_key: str


@dataclass
class EvalResult:
    model: str
    suite: str
    suite_version: str
    engine_version: str
    settings: dict
    settings_key: str
    # {suite task: {metric, value, stderr, n, higher_is_better, tasks: [lm-eval leaf tasks]}}
    metrics: dict
    # lm-eval's results JSON, without the samples
    results: dict
    # lm-eval's per-sample logs, each with its leaf "task"
    samples: list[dict] = field(default_factory=list, repr=False)
    duration_s: float = 0.0
    # unique requests the engine scored, and those found in a request store (`evals.store`)
    requests: dict = field(default_factory=dict)

    def header(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        return d

    def save(self, path: Path, samples_path: Path | None = None) -> str:
        """Write the results JSON at `path` and the samples (gzipped JSON lines) beside it;
        returns the samples file's sha256."""
        path = Path(path)
        samples_path = Path(samples_path) if samples_path else path.with_name(path.stem + ".samples.jsonl.gz")
        digest = write_samples(self.samples, samples_path)
        header = {**self.header(), "samples_file": os.path.relpath(samples_path, path.parent), "samples_sha256": digest}
        _atomic_write(path, json.dumps(header, indent=1).encode())
        return digest

    @classmethod
    def load(cls, path: Path) -> "EvalResult":
        path = Path(path)
        header = json.loads(path.read_text())
        samples = read_samples(path.parent / header.pop("samples_file"), header.pop("samples_sha256", None))
        return cls(**header, samples=samples)


_ENGINE_BLOCK_SIZE = 16  # engine.LLM's default


def prepare(model_dir: Path | str, suite: Suite | str, options: EvalOptions = EvalOptions()) -> Plan:
    import lm_eval

    from engine.config import ModelConfig, resolve_device, resolve_dtype
    from engine.version import engine_version

    model_dir = Path(model_dir)
    check_checkpoint_folder(model_dir)  # before its config or tokenizer is read
    suite = get_suite(suite) if not isinstance(suite, Suite) else suite
    specs = tuple(replace(s, chat_template=True) if options.chat_template else s for s in suite.tasks)
    tasks = build_all(specs, options.data_dir)
    model = ModelConfig.from_pretrained(model_dir)
    device = resolve_device(options.device)
    settings = {
        "suite": suite.name,
        "suite_version": suite.version,
        **({"suite_content": suite.content_hash} if suite.content_hash else {}),
        "tasks": [{**asdict(t.spec), "file": None, "data": t.data} for t in tasks],
        "fewshot_seed": suite.fewshot_seed,
        "engine_version": engine_version(),
        "lm_eval_version": lm_eval.__version__,
        "dtype": str(resolve_dtype(options.dtype, model, device)).removeprefix("torch."),
        "device": device.type,
        "add_bos_token": options.add_bos_token,
        # each task's own flag is in its spec above
        "chat_template": _chat_template_digest(model_dir) if any(s.chat_template for s in specs) else None,
        "max_model_len": options.max_model_len,
        "block_size": options.block_size or (1 if device.type == "cpu" else _ENGINE_BLOCK_SIZE),
        # the engine batches requests of one run together, so one sample's score may move in
        # the last bits with its batch; both arms of a comparison run the same request stream
        "batch_invariant": False,
        "bootstrap_iters": options.bootstrap_iters,
    }
    return Plan(model_dir, suite, options, tasks, settings, settings_key(settings))


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _chat_template_digest(model_dir: Path) -> str:
    from transformers import AutoTokenizer

    template = AutoTokenizer.from_pretrained(model_dir).chat_template
    if not template:
        raise SuiteError(f"{model_dir}: the tokenizer has no chat template to apply")
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run(
    plan: Plan,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    lm=None,
    store: RequestStore | None = None,
) -> EvalResult:
    """Evaluate the plan on the engine. `lm`: another lm-eval backend to run instead, on the
    same tasks and documents (to compare backends; the settings then do not describe it).
    `store`: this model's store for the plan's settings (`RequestStore.open`); what it holds is
    not scored again, and what is scored is added to it as it completes."""
    import lm_eval
    from lm_eval.api.group import Group
    from lm_eval.defaults import DEFAULT_RANDOM_SEED
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    from evals.backend import EngineLM

    if store is not None and lm is not None:
        raise ValueError("a request store serves the engine backend only, not another lm-eval backend")
    if store is not None and store.settings_key != plan.settings_key:
        raise ValueError(f"the request store holds settings {store.settings_key[:12]}, not {plan.settings_key[:12]}")
    say = progress or (lambda done, message: None)
    started = time.monotonic()
    say(0.0, "loading tasks")
    manager = TaskManager(include_defaults=False)
    # lm-eval applies the chat template to a whole evaluate call: one call per setting, in the
    # suite's order, each holding its tasks and their documents
    calls: dict[bool, _Call] = {}
    leaves = {}
    for built in plan.tasks:
        # some tasks draw from Python's random as they prepare their documents (GPQA shuffles its
        # choices); `lm_eval` seeds it before it loads a run's tasks, so each task here starts
        # from that seed, as in a run of its own
        random.seed(DEFAULT_RANDOM_SEED)
        try:
            obj = _load(manager, built.config)
        except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; each means no data
            where = (
                "the Hugging Face hub (set a local data directory to run offline)"
                if built.data.startswith("hf:")
                else "the local data"
            )
            raise SuiteError(
                f"{built.spec.name}: cannot load its documents from {where}: {type(exc).__name__}: {exc}"
                + (f". {built.hint}" if built.hint else "")
            ) from None
        call = calls.setdefault(built.spec.chat_template, _Call())
        call.tasks.append(obj)
        tasks = {t.task_name: t for t in obj.get_all_tasks()} if isinstance(obj, Group) else {obj.task_name: obj}
        leaves[built.spec.name] = list(tasks)
        for leaf, task in tasks.items():
            kind = "loglikelihood" if task.OUTPUT_TYPE == "multiple_choice" else task.OUTPUT_TYPE
            if kind not in call.kinds:
                call.kinds.append(kind)
            if built.spec.limit is not None:
                call.samples[leaf] = list(range(min(built.spec.limit, len(task.eval_docs))))
    if cancelled and cancelled():
        raise Cancelled("cancelled")
    # lm-eval runs each kind of request (log-likelihood, rolling, generation) of a call as one batch
    phases = [(chat, kind) for chat, call in calls.items() for kind in call.kinds]
    running = [False]  # the chat setting of the call in progress

    def engine_progress(fraction: float, message: str) -> None:
        phase = (running[0], message.split(":", 1)[0])
        done = phases.index(phase) if phase in phases else 0
        say(0.05 + 0.9 * (done + fraction) / len(phases), message)

    say(0.02, "loading the model")  # its folder may be a content hash in the hub's store
    s = plan.settings
    if lm is None:
        lm = EngineLM(
            plan.model_dir,
            dtype=s["dtype"],
            device=plan.options.device,
            add_bos_token=s["add_bos_token"],
            max_model_len=s["max_model_len"],
            block_size=s["block_size"],
            progress=engine_progress,
            cancelled=cancelled,
            store=store,
        )
    outs = []
    # lm-eval's bootstrap (stderr of perplexities) forks a process pool, which can deadlock in
    # a process that runs other threads (a worker's heartbeat); in one process it takes a second
    saved = os.environ.get("DISABLE_MULTIPROC")
    os.environ["DISABLE_MULTIPROC"] = "1"
    try:
        for chat, call in calls.items():
            running[0] = chat
            outs.append(
                lm_eval.simple_evaluate(
                    model=lm,
                    tasks=call.tasks,
                    samples=call.samples or None,
                    task_manager=manager,
                    log_samples=True,
                    bootstrap_iters=plan.options.bootstrap_iters,
                    fewshot_random_seed=plan.suite.fewshot_seed,
                    apply_chat_template=chat,
                    fewshot_as_multiturn=chat,
                )
            )
    finally:
        if saved is None:
            os.environ.pop("DISABLE_MULTIPROC")
        else:
            os.environ["DISABLE_MULTIPROC"] = saved
    out = _merge(outs)
    logged = out.pop("samples", {}) or {}
    results = json.loads(json.dumps(out, default=handle_non_serializable))
    per_sample = [
        {"task": leaf, **json.loads(json.dumps(entry, default=handle_non_serializable))}
        for built in plan.tasks
        for leaf in leaves[built.spec.name]
        for entry in logged.get(leaf, [])
    ]
    metrics = {}
    for built in plan.tasks:
        spec = built.spec
        row = results["results"].get(spec.name) or results.get("groups", {}).get(spec.name, {})
        if spec.metric_key not in row:
            found = sorted(k for k in row if "," in k and "_stderr" not in k)
            raise SuiteError(f"{spec.name}: lm-eval reported no {spec.metric_key!r} (it reported {found})")
        stderr = row.get(f"{spec.metric}_stderr,{spec.filter}")
        higher = results.get("higher_is_better", {}).get(spec.name, {}).get(spec.metric)
        metrics[spec.name] = {
            "metric": spec.metric_key,
            "value": float(row[spec.metric_key]),
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
            "n": sum(int(results["n-samples"][leaf]["effective"]) for leaf in leaves[spec.name]),
            "higher_is_better": True if higher is None else bool(higher),
            "tasks": leaves[spec.name],
            "data": built.data,
        }
    say(1.0, "done")
    return EvalResult(
        model=str(plan.model_dir),
        suite=plan.suite.name,
        suite_version=plan.suite.version,
        engine_version=s["engine_version"],
        settings=plan.settings,
        settings_key=plan.settings_key,
        metrics=metrics,
        results=results,
        samples=per_sample,
        duration_s=time.monotonic() - started,
        requests=dict(lm.counts) if isinstance(lm, EngineLM) else {},
    )


@dataclass
class _Call:
    """The tasks of one lm-eval evaluate call: its loaded tasks, the kinds of request they make,
    and the documents of those with a limit."""

    tasks: list = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    samples: dict[str, list[int]] = field(default_factory=dict)


# the entries of lm-eval's results that are tables by task or group; the rest (the model's and
# the environment's description) is the same for every call of a run
_BY_TASK = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


def _merge(outs: list[dict]) -> dict:
    """The results of a run's evaluate calls as one: their tables by task joined, with the
    samples; the rest as the first call reported it."""
    merged = dict(outs[0])
    for out in outs[1:]:
        for key in (*_BY_TASK, "samples"):
            if key in out:
                merged[key] = {**merged.get(key, {}), **out[key]}
    return merged


def _load(manager, config: dict):
    """One task or group from its inline config. lm-eval's loader hands an inline group's own
    keys down to its members as overrides, so a group is put together here."""
    from lm_eval.api.group import Group
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.config.group import GroupConfig

    if "group" not in config:
        return manager.load(config)["tasks"][config["task"]]
    members = config["task"]
    group = Group.from_config(GroupConfig(**{**config, "task": [m["task"] for m in members]}))
    for member in members:
        group.add(ConfigurableTask(config=member))
    return group


def evaluate(
    model_dir: Path | str,
    suite: Suite | str,
    options: EvalOptions = EvalOptions(),
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
) -> EvalResult:
    return run(prepare(model_dir, suite, options), progress, cancelled)


def write_samples(samples: list[dict], path: Path) -> str:
    """Gzipped JSON lines, written to a temporary file and renamed into place; returns the sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            for sample in samples:
                f.write(json.dumps(sample, ensure_ascii=False).encode() + b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_file(path)


def read_samples(path: Path, sha256: str | None = None) -> list[dict]:
    path = Path(path)
    if sha256 is not None and sha256_file(path) != sha256:
        raise ValueError(f"{path} does not match its recorded sha256; the per-sample log was changed")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
