"""Versioned task suites: which tasks, how many shots, how many documents, which metric decides.

A suite's `version` changes whenever anything that moves its numbers changes (a task, a shot
count, a limit, a metric); runs are only compared when their settings, which include the suite
and its version, are identical. Users add suites as YAML files (see `load_suite`), whose tasks
may be stock lm-eval task names or local task files in the lm-eval task YAML shape; the hub
stores uploaded ones (hub.suites), checks them with `suite_fields` and `check_suite`, and adds
their content hash to the settings.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml


class SuiteError(ValueError):
    """A suite or task definition that cannot be used (unknown name, bad file, missing data)."""


@dataclass(frozen=True)
class TaskSpec:
    # a stock lm-eval task or group name (see evals.tasks.STOCK), or the `task` name of `file`
    name: str
    num_fewshot: int = 0
    # first `limit` documents of the evaluation split; None: all of them
    limit: int | None = None
    # the metric that decides recovery, as lm-eval names it in results ("acc_norm", "exact_match")
    metric: str = "acc"
    # lm-eval's filter name the metric sits under ("none" unless the task defines filters)
    filter: str = "none"
    # a local task file in the lm-eval task YAML shape (users' own tasks)
    file: str | None = None
    # apply the tokenizer's chat template to this task's prompts, few-shot examples as turns
    chat_template: bool = False

    @property
    def metric_key(self) -> str:
        return f"{self.metric},{self.filter}"


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    tasks: tuple[TaskSpec, ...]
    # None: the recipe's default (99% for 8-bit schemes, 96% for 4-bit and 2:4)
    recovery_threshold: float | None = None
    fewshot_seed: int = 1234
    # sha256 of a hub suite's whole definition (its files and the data it pins): part of the
    # settings, so two suites that differ never share a baseline; empty for built-in suites
    content_hash: str = ""

    @property
    def chat_template(self) -> bool:
        """Every task applies the tokenizer's chat template."""
        return all(t.chat_template for t in self.tasks)

    def to_dict(self) -> dict:
        return asdict(self)


def _tasks(*specs: TaskSpec) -> tuple[TaskSpec, ...]:
    return tuple(specs)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "quick",
            "1",
            "Quick check that runs on a CPU in minutes: ARC-Easy, HellaSwag, WinoGrande and LAMBADA subsets, zero-shot",
            _tasks(
                TaskSpec("arc_easy", 0, limit=200, metric="acc_norm"),
                TaskSpec("hellaswag", 0, limit=100, metric="acc_norm"),
                TaskSpec("winogrande", 0, limit=200, metric="acc"),
                TaskSpec("lambada_openai", 0, limit=200, metric="acc"),
            ),
        ),
        Suite(
            "openllm-v1",
            "1",
            "Open LLM Leaderboard v1: ARC-Challenge 25-shot, HellaSwag 10, MMLU 5, TruthfulQA-mc2 0, "
            "WinoGrande 5, GSM8K 5 (full sets; a GPU job)",
            _tasks(
                TaskSpec("arc_challenge", 25, metric="acc_norm"),
                TaskSpec("hellaswag", 10, metric="acc_norm"),
                TaskSpec("mmlu", 5, metric="acc"),
                TaskSpec("truthfulqa_mc2", 0, metric="acc"),
                TaskSpec("winogrande", 5, metric="acc"),
                TaskSpec("gsm8k", 5, metric="exact_match", filter="strict-match"),
            ),
        ),
        Suite(
            "wikitext",
            "1",
            "WikiText-2 perplexity (word perplexity over the test articles, lower is better)",
            _tasks(TaskSpec("wikitext", 0, metric="word_perplexity")),
        ),
        Suite(
            "chat-quick",
            "1",
            "Chat check that runs on a CPU: GSM8K 5-shot (first 50 problems, the shots as chat turns) and our 40 "
            "instruction-following prompts, greedy, with the chat template",
            _tasks(
                TaskSpec("gsm8k", 5, limit=50, metric="exact_match", filter="strict-match", chat_template=True),
                TaskSpec("ifollow", 0, metric="prompt_level_strict_acc", chat_template=True),
            ),
        ),
        Suite(
            "openllm-v2",
            "1",
            "Open LLM Leaderboard v2 as lm-eval's `leaderboard` group runs it: IFEval, BBH 3-shot, MATH level 5 "
            "4-shot, GPQA, MuSR, MMLU-Pro 5-shot, with the chat template (full sets; a GPU job; data from dataset "
            "repositories of the hub)",
            _tasks(
                TaskSpec("leaderboard_ifeval", 0, metric="prompt_level_strict_acc", chat_template=True),
                TaskSpec("leaderboard_bbh", 3, metric="acc_norm", chat_template=True),
                TaskSpec("leaderboard_math_hard", 4, metric="exact_match", chat_template=True),
                TaskSpec("leaderboard_gpqa", 0, metric="acc_norm", chat_template=True),
                TaskSpec("leaderboard_musr", 0, metric="acc_norm", chat_template=True),
                TaskSpec("leaderboard_mmlu_pro", 5, metric="acc", chat_template=True),
            ),
        ),
    )
}


def get_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name, or a user's suite file (YAML, see `load_suite`)."""
    if isinstance(name_or_path, str) and name_or_path in SUITES:
        return SUITES[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_suite(path)
    raise SuiteError(
        f"unknown suite {str(name_or_path)!r}; built-in suites: {', '.join(SUITES)} (or a suite YAML file)"
    )


# What a suite may ask for: more shots than any leaderboard uses, more documents than a suite
# should take from one task; beyond them a number is a typo (or an attempt to tie up a GPU).
MAX_FEWSHOT = 64
MAX_LIMIT = 100_000
MAX_TASKS = 64
SUITE_KEYS = ("suite", "version", "description", "recovery_threshold", "fewshot_seed", "tasks")
TASK_KEYS = ("task", "file", "num_fewshot", "limit", "metric", "filter", "chat_template")


def load_suite(path: Path) -> Suite:
    """A suite file:

    suite: my-suite
    version: "1"
    description: ...
    recovery_threshold: 0.97      # optional
    tasks:
      - {task: arc_easy, num_fewshot: 0, limit: 500, metric: acc_norm}
      - {file: my_task.yaml, metric: acc, chat_template: false}   # lm-eval task YAML; relative to this file
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: {exc}") from None
    fields = suite_fields(raw, str(path))
    specs = []
    for item in fields["tasks"]:
        file = None
        name = item["task"]
        if item["file"]:
            task_file = (path.parent / item["file"]).resolve()
            if not task_file.is_file():
                raise SuiteError(f"{path}: task file {task_file} not found")
            file = str(task_file)
            name = name or _task_name_of(task_file)
        specs.append(
            TaskSpec(
                name=name,
                num_fewshot=item["num_fewshot"],
                limit=item["limit"],
                metric=item["metric"],
                filter=item["filter"],
                file=file,
                chat_template=item["chat_template"],
            )
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SuiteError(f"{path}: tasks: each task may appear once (results are kept by task name): {names}")
    _sandbox_templates()
    return Suite(
        name=fields["suite"],
        version=fields["version"] or "1",
        description=fields["description"],
        tasks=tuple(specs),
        recovery_threshold=fields["recovery_threshold"],
        fewshot_seed=fields["fewshot_seed"],
    )


def suite_fields(raw: object, where: str) -> dict:
    """The fields of a suite document, each checked, with defaults filled in: `suite`, `version`
    (None when absent), `description`, `recovery_threshold`, `fewshot_seed`, `chat_template` (true
    when every task applies it) and `tasks`, each task with every key of TASK_KEYS. A SuiteError names the
    file (`where`) and the key."""
    if not isinstance(raw, dict) or not raw.get("suite") or not isinstance(raw.get("tasks"), list):
        raise SuiteError(f"{where}: a suite file needs `suite: NAME` and a `tasks:` list")
    unknown = sorted(str(k) for k in raw if k not in SUITE_KEYS)
    if unknown:
        raise SuiteError(f"{where}: unknown keys {unknown}; a suite has {', '.join(SUITE_KEYS)}")
    if not isinstance(raw["suite"], str):
        raise SuiteError(f"{where}: suite: the name must be text, got {raw['suite']!r}")
    if not raw["tasks"] or len(raw["tasks"]) > MAX_TASKS:
        raise SuiteError(f"{where}: tasks: a suite has from 1 to {MAX_TASKS} tasks, got {len(raw['tasks'])}")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise SuiteError(f"{where}: description: must be text")
    threshold = raw.get("recovery_threshold")
    if threshold is not None and not (_is_number(threshold) and 0 < threshold <= 1):
        raise SuiteError(f"{where}: recovery_threshold: must be a fraction in (0, 1], got {threshold!r}")
    seed = raw.get("fewshot_seed", 1234)
    if not (_is_int(seed) and 0 <= seed < 2**32):
        raise SuiteError(f"{where}: fewshot_seed: must be a whole number from 0 to 2**32-1, got {seed!r}")
    version = raw.get("version")
    if version is not None and (not isinstance(version, (str, int)) or isinstance(version, bool) or not str(version)):
        raise SuiteError(f"{where}: version: must be text or a number, got {version!r}")
    tasks = [_task_fields(item, f"{where}: tasks[{i}]") for i, item in enumerate(raw["tasks"])]
    return {
        "suite": raw["suite"],
        "version": None if version is None else str(version),
        "description": description,
        "recovery_threshold": None if threshold is None else float(threshold),
        "fewshot_seed": seed,
        "chat_template": all(t["chat_template"] for t in tasks),
        "tasks": tasks,
    }


def _task_fields(item: object, where: str) -> dict:
    if not isinstance(item, dict) or not (item.get("task") or item.get("file")):
        raise SuiteError(f"{where}: each task needs `task: NAME` or `file: TASK.yaml`, got {item!r}")
    unknown = sorted(str(k) for k in item if k not in TASK_KEYS)
    if unknown:
        raise SuiteError(f"{where}: unknown task keys {unknown}; a task has {', '.join(TASK_KEYS)}")
    for key in ("task", "file", "metric", "filter"):
        if key in item and not (isinstance(item[key], str) and 0 < len(item[key]) <= 200):
            raise SuiteError(f"{where}.{key}: must be a name of up to 200 characters, got {item[key]!r}")
    shots = item.get("num_fewshot", 0)
    if not (_is_int(shots) and 0 <= shots <= MAX_FEWSHOT):
        raise SuiteError(f"{where}.num_fewshot: must be a whole number from 0 to {MAX_FEWSHOT}, got {shots!r}")
    limit = item.get("limit")
    if limit is not None and not (_is_int(limit) and 1 <= limit <= MAX_LIMIT):
        raise SuiteError(
            f"{where}.limit: must be a whole number of documents from 1 to {MAX_LIMIT} (or left out: all), "
            f"got {limit!r}"
        )
    chat = item.get("chat_template", False)
    if not isinstance(chat, bool):
        raise SuiteError(f"{where}.chat_template: must be true or false, got {chat!r}")
    return {
        "task": item.get("task"),
        "file": item.get("file"),
        "num_fewshot": shots,
        "limit": limit,
        "metric": item.get("metric", "acc"),
        "filter": item.get("filter", "none"),
        "chat_template": chat,
    }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sandbox_templates() -> None:
    """lm-eval renders a task's prompts with Jinja, which, unsandboxed, lets a template reach
    Python (`{{ ''.__class__.__mro__ }}`): a task file is then code. Rendered in Jinja's sandbox,
    a template reads the document's fields and calls safe methods, nothing else."""
    import lm_eval.utils
    from jinja2.sandbox import SandboxedEnvironment

    current = lm_eval.utils.env
    if isinstance(current, SandboxedEnvironment):
        return
    sandbox = SandboxedEnvironment(loader=current.loader, undefined=current.undefined, keep_trailing_newline=True)
    sandbox.filters.update(current.filters)
    lm_eval.utils.env = sandbox


# prompts an upload check renders per task: enough to meet a missing column, bounded in time
CHECK_DOCUMENTS = 1000


def check_suite(suite: Suite) -> None:
    """Build each task of `suite` with lm-eval, offline, as a run would, and refuse (SuiteError)
    what would fail on a worker: a task lm-eval cannot build from its file and data, an
    evaluation split without documents, shots without a split to draw them from, a prompt that
    does not render for a document it would evaluate (a missing column), a target outside its
    choices, or a metric and filter the task does not report. A stock task is lm-eval's own
    file: only its metric is checked here, its data when it runs."""
    from lm_eval.tasks import TaskManager

    from evals.run import _load
    from evals.tasks import build

    manager = TaskManager(include_defaults=False)
    for spec in suite.tasks:
        built = build(spec, None)  # a task file names its own data; a stock task's is not read here
        if not spec.file:
            config = built.config
            metrics = [m["metric"] for m in config.get("metric_list") or config.get("aggregate_metric_list") or []]
            filters = [f["name"] for f in config.get("filter_list") or []] or ["none"]
            _check_metric(spec, spec.name, metrics, filters)
            continue
        where = Path(spec.file).name
        try:
            task = _load(manager, built.config)
        except Exception as exc:  # noqa: BLE001 - lm-eval and datasets raise many kinds; each means it cannot build
            raise SuiteError(f"{where}: lm-eval cannot build the task from it: {type(exc).__name__}: {exc}") from None
        _check_metric(spec, where, list(task._metric_fn_list), [f.name for f in task._filters])
        docs = task.eval_docs
        if not len(docs):
            raise SuiteError(f"{where}: its evaluation split holds no documents")
        if spec.num_fewshot:
            shots = task.fewshot_docs()
            if not shots or len(shots) < spec.num_fewshot:
                raise SuiteError(
                    f"{where}: {spec.num_fewshot}-shot needs that many documents in a training or few-shot split, "
                    f"and it has {len(shots) if shots else 0}"
                )
        for i in range(min(len(docs), spec.limit or len(docs), CHECK_DOCUMENTS)):
            try:
                task.doc_to_text(docs[i])
                target = task.doc_to_target(docs[i])
                if task.OUTPUT_TYPE == "multiple_choice":
                    choices = task.doc_to_choice(docs[i])
                    if isinstance(target, int) and not 0 <= target < len(choices):
                        raise ValueError(f"the target {target} is not the index of one of its {len(choices)} choices")
            except Exception as exc:  # noqa: BLE001 - a template or its data failing in any way
                raise SuiteError(
                    f"{where}: document {i}: the prompt does not render: {type(exc).__name__}: {exc}"
                ) from None


def _check_metric(spec: TaskSpec, where: str, metrics: list[str], filters: list[str]) -> None:
    if spec.metric not in metrics:
        raise SuiteError(f"{where}: metric: the task reports {', '.join(metrics) or 'no metric'}, not {spec.metric!r}")
    if spec.filter not in filters:
        raise SuiteError(f"{where}: filter: the task's filters are {', '.join(filters)}, not {spec.filter!r}")


def _task_name_of(task_file: Path) -> str:
    raw = yaml.load(task_file.read_text(), Loader=_IgnoreTagsLoader)  # noqa: S506 - tags are ignored, not run
    if not isinstance(raw, dict) or not raw.get("task"):
        raise SuiteError(f"{task_file}: not an lm-eval task file (no `task:` name)")
    return str(raw["task"])


class _IgnoreTagsLoader(yaml.SafeLoader):
    """Reads a task YAML's plain keys without importing the functions its `!function` tags name."""


_IgnoreTagsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
