"""Versioned task suites: which tasks, how many shots, how many documents, which metric decides.

A suite's `version` changes whenever anything that moves its numbers changes (a task, a shot
count, a limit, a metric); runs are only compared when their settings, which include the suite
and its version, are identical. Users add suites as YAML files (see `load_suite`), whose tasks
may be stock lm-eval task names or local task files in the lm-eval task YAML shape.
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


def load_suite(path: Path) -> Suite:
    """A suite file:

    suite: my-suite
    version: "1"
    description: ...
    recovery_threshold: 0.97      # optional
    tasks:
      - {task: arc_easy, num_fewshot: 0, limit: 500, metric: acc_norm}
      - {file: my_task.yaml, metric: acc}     # lm-eval task YAML; relative to this file
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: {exc}") from None
    if not isinstance(raw, dict) or not raw.get("suite") or not isinstance(raw.get("tasks"), list):
        raise SuiteError(f"{path}: a suite file needs `suite: NAME` and a `tasks:` list")
    specs = []
    for item in raw["tasks"]:
        if not isinstance(item, dict) or not (item.get("task") or item.get("file")):
            raise SuiteError(f"{path}: each task needs `task: NAME` or `file: TASK.yaml`, got {item!r}")
        file = None
        name = item.get("task")
        if item.get("file"):
            task_file = (path.parent / item["file"]).resolve()
            if not task_file.is_file():
                raise SuiteError(f"{path}: task file {task_file} not found")
            file = str(task_file)
            name = name or _task_name_of(task_file)
        unknown = set(item) - {"task", "file", "num_fewshot", "limit", "metric", "filter"}
        if unknown:
            raise SuiteError(f"{path}: unknown task keys {sorted(unknown)}")
        specs.append(
            TaskSpec(
                name=name,
                num_fewshot=int(item.get("num_fewshot", 0)),
                limit=item.get("limit"),
                metric=item.get("metric", "acc"),
                filter=item.get("filter", "none"),
                file=file,
            )
        )
    threshold = raw.get("recovery_threshold")
    return Suite(
        name=str(raw["suite"]),
        version=str(raw.get("version", "1")),
        description=str(raw.get("description", "")),
        tasks=tuple(specs),
        recovery_threshold=float(threshold) if threshold is not None else None,
        fewshot_seed=int(raw.get("fewshot_seed", 1234)),
    )


def _task_name_of(task_file: Path) -> str:
    raw = yaml.load(task_file.read_text(), Loader=_IgnoreTagsLoader)  # noqa: S506 - tags are ignored, not run
    if not isinstance(raw, dict) or not raw.get("task"):
        raise SuiteError(f"{task_file}: not an lm-eval task file (no `task:` name)")
    return str(raw["task"])


class _IgnoreTagsLoader(yaml.SafeLoader):
    """Reads a task YAML's plain keys without importing the functions its `!function` tags name."""


_IgnoreTagsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
