"""How each task of an evaluation run was set up, and the lm-eval command that measures the same
number with lm-eval's own `hf` backend (transformers) instead of this hub's engine. The variant
page and the model card both show these, from the settings `evals.prepare` recorded."""

import shlex
from dataclasses import dataclass

from hub.results.models import EvalRun

# lm-eval's Python, NumPy and torch seeds, which `evals.run` leaves at simple_evaluate's defaults;
# the fourth, the few-shot seed, is the suite's
SEEDS = "0,1234,1234"


@dataclass(frozen=True)
class TaskSetup:
    task: str
    suite: str  # name and version
    recorded: bool  # False: the run did not record this task's settings (the fields below are empty)
    num_fewshot: int | None
    limit: int | None  # the first `limit` documents; None: all of them
    chat_template: bool
    command: str
    data_note: str  # when lm-eval's own copy of the task would not be the documents scored here


def task_setups(run: EvalRun, pretrained: str) -> dict[str, TaskSetup]:
    """Per task of the run, its setup and the command that reproduces its number from `pretrained`
    (a repository id, with HF_ENDPOINT naming its hub, or a local folder)."""
    settings = run.settings or {}
    specs = {t.get("name"): t for t in settings.get("tasks") or [] if isinstance(t, dict)}
    chat = bool(settings.get("chat_template"))
    out = {}
    for task in run.metrics or {}:
        spec = specs.get(task)
        out[task] = TaskSetup(
            task=task,
            suite=f"{run.suite} v{run.suite_version}",
            recorded=spec is not None,
            num_fewshot=spec.get("num_fewshot") if spec else None,
            limit=spec.get("limit") if spec else None,
            chat_template=bool(spec.get("chat_template", chat)) if spec else chat,
            command=lm_eval_command(settings, spec, pretrained) if spec else "",
            data_note=data_note(spec.get("data") or "") if spec else "",
        )
    return out


def lm_eval_command(settings: dict, spec: dict, pretrained: str) -> str:
    """`lm_eval --model hf ...` with everything of the run's settings that moves the number:
    dtype, BOS and length overrides, shots, limit, seeds and the chat template."""
    model_args = [f"pretrained={pretrained}"]
    if settings.get("dtype"):
        model_args.append(f"dtype={settings['dtype']}")
    if settings.get("add_bos_token") is not None:
        model_args.append(f"add_bos_token={settings['add_bos_token']}")
    if settings.get("max_model_len"):
        model_args.append(f"max_length={settings['max_model_len']}")
    words = ["lm_eval", "--model", "hf", "--model_args", ",".join(model_args), "--tasks", spec["name"]]
    words += ["--num_fewshot", str(spec.get("num_fewshot") or 0)]
    if spec.get("limit") is not None:
        words += ["--limit", str(spec["limit"])]
    if settings.get("fewshot_seed") is not None:
        words += ["--seed", f"{SEEDS},{settings['fewshot_seed']}"]
    # a run records each task's flag (older runs: one for the whole run)
    if spec.get("chat_template", settings.get("chat_template")):
        words += ["--apply_chat_template", "--fewshot_as_multiturn"]
    words += ["--log_samples", "--output_path", "out"]
    # names come from users' suites and repositories: quoted, they stay one word each
    return " ".join(shlex.quote(str(w)) for w in words)


def data_note(data: str) -> str:
    if data.startswith("local:"):
        return "scored on a local copy of the task's data: lm-eval reads the task's own dataset, which must hold the same documents"
    if data.startswith("file:"):
        return "a task file of the suite: add --include_path with the folder that holds it"
    if data.startswith("ours:"):
        return "a task of this hub's own (evals/), not one of lm-eval's: its hf backend scores it through evals.run"
    return ""
