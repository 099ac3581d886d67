"""A user's evaluation suite as uploaded: the suite YAML, the lm-eval task YAMLs it names and small
data files, checked whole before anything is stored (`check_upload`, `check_builds`), and written
out as the folder lm-eval reads (`materialize`).

Everything in an upload is hostile until checked. File names are flat (no folders) and every file
must be used. YAML is bounded and carries no tags: lm-eval's `!function` imports Python on whatever
machine loads the file. A task YAML has only the keys of lm-eval's task config that describe data,
prompts and scoring, never one of its Python hooks; its metrics, aggregations and filters are
lm-eval's registered ones (for any other metric name lm-eval fetches a metric script from the
Hugging Face hub and runs it). Its documents come from a dataset repository of this hub that the
uploader may read, pinned to the commit it is at, or from data files shipped in the upload. Then
lm-eval builds every task offline on that data and renders its prompts (in Jinja's sandbox, see
`evals.suites`) before the upload is accepted."""

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from hub.parsing import ParseError, load_yaml
from hub.suites import store

# One path segment: an upload is a flat set of files, named as the browser or client sent them.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Suite names share recipe names' alphabet: they appear in job references and evaluation rows.
SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# lm-eval's `dataset_path` for data files shipped with the suite (datasets' packaged readers)
PACKAGED = ("json", "csv", "parquet", "text")
OUTPUT_TYPES = ("loglikelihood", "loglikelihood_rolling", "multiple_choice", "generate_until")
# The keys of lm-eval's task config a suite's task file may use: data, prompts and scoring.
TASK_KEYS = (
    "task",
    "task_alias",
    "tag",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "description",
    "target_delimiter",
    "fewshot_delimiter",
    "fewshot_config",
    "num_fewshot",
    "metric_list",
    "output_type",
    "generation_kwargs",
    "repeats",
    "filter_list",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "gen_prefix",
    "metadata",
)
# The keys that make lm-eval run Python (or fetch templates) on the worker, and why each is refused.
HOOKS = {
    "class": "a Python class to run",
    "custom_dataset": "a Python function that makes the documents",
    "process_docs": "a Python function over the documents",
    "process_results": "a Python function that scores",
    "unsafe_code": "code execution on the worker",
    "use_prompt": "promptsource templates loaded from elsewhere",
    "doc_to_image": "images (the hub evaluates text models)",
    "doc_to_audio": "audio (the hub evaluates text models)",
    "group": "a group of tasks (list each task in the suite instead)",
}
FEWSHOT_KEYS = (
    "sampler",
    "split",
    "fewshot_indices",
    "samples",
    "doc_to_text",
    "doc_to_choice",
    "doc_to_target",
    "gen_prefix",
    "fewshot_delimiter",
    "target_delimiter",
)
MAX_REPEATS = 16
# YAML's own types (`!!str`, `!!int`, ...), which a safe loader builds without running anything
CORE_TAGS = "tag:yaml.org,2002:"
MAX_INCLUDE_DEPTH = 4
# A dataset repository's files a task does not read as data
NOT_DATA = (".gitattributes", "README.md")


class SuiteRefused(ValueError):
    """An upload (or a use of a suite) the hub refuses; the message names the file and the key."""


@dataclass
class Definition:
    """A checked suite: its fields, its files (name -> bytes) and the dataset commits it pins."""

    name: str
    description: str
    recovery_threshold: float | None
    fewshot_seed: int
    tasks: list[dict]  # evals.suites.suite_fields' task entries
    suite_file: str
    files: dict[str, bytes]
    # repository id -> {"commit": sha, "files": [{path, size, sha256}]}
    datasets: dict[str, dict]

    @property
    def content_hash(self) -> str:
        """sha256 over the normalized suite, every file and every pinned dataset file: what the
        evaluation settings carry, so two definitions that differ never share a baseline."""
        doc = {
            "description": self.description,
            "recovery_threshold": self.recovery_threshold,
            "fewshot_seed": self.fewshot_seed,
            "tasks": self.tasks,
            "suite_file": self.suite_file,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())},
            "datasets": self.datasets,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_file_name(name: str) -> str:
    if not FILE_NAME.fullmatch(name or "") or ".." in name:
        raise SuiteRefused(
            f"file name {name!r} is not accepted: a suite's files are named with letters, digits, '.', '_' and '-' "
            "(no folders, no '..'), up to 100 characters"
        )
    return name


def read_uploads(suite: UploadedFile, others: list[UploadedFile]) -> tuple[str, dict[str, bytes]]:
    """The uploaded files by name, within the hub's limits; the first is the suite YAML."""
    uploads = [suite, *others]
    if len(uploads) > settings.SUITE_MAX_FILES:
        raise SuiteRefused(f"{len(uploads)} files: a suite upload holds at most {settings.SUITE_MAX_FILES}")
    files: dict[str, bytes] = {}
    total = 0
    for upload in uploads:
        name = check_file_name(upload.name)
        if name in files:
            raise SuiteRefused(f"{name}: uploaded twice; each file once")
        data = upload.read(settings.SUITE_MAX_FILE_BYTES + 1)
        if len(data) > settings.SUITE_MAX_FILE_BYTES:
            raise SuiteRefused(
                f"{name}: larger than {settings.SUITE_MAX_FILE_BYTES} bytes, the most a suite file may be"
            )
        total += len(data)
        if total > settings.SUITE_MAX_UPLOAD_BYTES:
            raise SuiteRefused(
                f"the files add up to more than {settings.SUITE_MAX_UPLOAD_BYTES} bytes, the most an upload may"
            )
        files[name] = data
    return check_file_name(suite.name), files


def parse_yaml(data: bytes, name: str) -> object:
    """A YAML file of the upload: UTF-8, bounded (hub.parsing), and without tags."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SuiteRefused(f"{name}: not UTF-8 text") from None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            tag = getattr(event, "tag", None) or ""
            if tag and (not tag.startswith(CORE_TAGS) or tag.startswith(f"{CORE_TAGS}python/")):
                raise SuiteRefused(
                    f"{name}: line {event.start_mark.line + 1}: the tag {tag} is refused: tags make lm-eval import "
                    "and run Python (`!function`), and no user code runs on the hub's workers"
                )
        return load_yaml(text, name)
    except yaml.YAMLError as exc:
        raise SuiteRefused(f"{name}: not valid YAML: {exc}") from None
    except ParseError as exc:
        raise SuiteRefused(str(exc)) from None


def check_upload(suite_file: str, files: dict[str, bytes], dataset: Callable[[str], dict]) -> Definition:
    """Check an upload's suite YAML and the task files, includes and data files it names;
    `dataset(repo_id)` pins a dataset repository the uploader may read (or refuses)."""
    from evals.suites import SuiteError, suite_fields
    from evals.tasks import stock_task_names

    raw = parse_yaml(files[suite_file], suite_file)
    try:
        fields = suite_fields(raw, suite_file)
    except SuiteError as exc:
        raise SuiteRefused(str(exc)) from None
    if fields["version"] is not None:
        raise SuiteRefused(
            f"{suite_file}: version: the hub numbers a suite's versions itself (each upload under a name is the "
            "next one); remove the key"
        )
    if not SUITE_NAME.fullmatch(fields["suite"]) or ".." in fields["suite"]:
        raise SuiteRefused(
            f"{suite_file}: suite: {fields['suite']!r} is not a suite name: up to 80 letters, digits, '.', '_' and '-'"
        )
    used, datasets = {suite_file}, {}
    for i, task in enumerate(fields["tasks"]):
        where = f"{suite_file}: tasks[{i}]"
        if not task["file"]:
            if task["task"] not in stock_task_names():
                raise SuiteRefused(
                    f"{where}.task: unknown task {task['task']!r}; built-in tasks: {', '.join(stock_task_names())} "
                    "(or ship an lm-eval task YAML and name it with `file:`)"
                )
            continue
        if task["file"] == suite_file or task["file"] not in files:
            raise SuiteRefused(
                f"{where}.file: {task['file']!r} is not one of the uploaded files (name a task YAML uploaded with the "
                "suite, as it was uploaded, without folders)"
            )
        config, read = task_config(task["file"], files, suite_file)
        used |= read
        repo_id, data_files = data_source(config, task["file"], files)
        if repo_id is None:
            used |= set(data_files)
            continue
        if repo_id not in datasets:
            try:
                datasets[repo_id] = dataset(repo_id)
            except SuiteRefused as exc:
                raise SuiteRefused(f"{task['file']}: dataset_path: {exc}") from None
        present = {f["path"] for f in datasets[repo_id]["files"]}
        for path in data_files:
            if path not in present:
                raise SuiteRefused(
                    f"{task['file']}: dataset_kwargs.data_files: {path!r} is not a data file of the dataset {repo_id} "
                    f"(it has {', '.join(sorted(present)) or 'none'})"
                )
    unused = sorted(set(files) - used)
    if unused:
        raise SuiteRefused(
            f"{', '.join(unused)}: not used by the suite (a task file, an include or a data file it names); "
            "upload only what the suite reads"
        )
    return Definition(
        name=fields["suite"],
        description=fields["description"],
        recovery_threshold=fields["recovery_threshold"],
        fewshot_seed=fields["fewshot_seed"],
        tasks=fields["tasks"],
        suite_file=suite_file,
        files=files,
        datasets=datasets,
    )


def task_config(name: str, files: dict[str, bytes], suite_file: str, depth: int = 0) -> tuple[dict, set[str]]:
    """A task file's config with its `include`s merged in (lm-eval's rule: the including file's
    keys win), checked; and the names of the files it read."""
    raw = parse_yaml(files[name], name)
    if not isinstance(raw, dict):
        raise SuiteRefused(f"{name}: a task file is a mapping of lm-eval task keys")
    read = {name}
    include = raw.pop("include", None)
    if include is not None:
        if not isinstance(include, str) or include == suite_file or include not in files:
            raise SuiteRefused(
                f"{name}: include: {include!r} is not one of the uploaded files (an include names another task YAML "
                "of the upload, without folders)"
            )
        if depth >= MAX_INCLUDE_DEPTH:
            raise SuiteRefused(f"{name}: include: includes nest more than {MAX_INCLUDE_DEPTH} deep (or in a circle)")
        base, more = task_config(include, files, suite_file, depth + 1)
        raw = {**base, **raw}
        read |= more
    if depth == 0:
        check_task_config(raw, name)
    return raw, read


def check_task_config(config: dict, name: str) -> None:
    import lm_eval.api.metrics  # noqa: F401 - registers the metrics and aggregations
    import lm_eval.filters  # noqa: F401 - registers the filters
    from lm_eval.api import registry

    for key in config:
        if key in HOOKS:
            raise SuiteRefused(
                f"{name}: {key}: refused: it asks for {HOOKS[key]}, and no user code runs on the hub's workers"
            )
        if key not in TASK_KEYS:
            raise SuiteRefused(f"{name}: unknown key {key!r}; a task file has lm-eval's keys {', '.join(TASK_KEYS)}")
    if not isinstance(config.get("task"), str) or not config["task"]:
        raise SuiteRefused(f"{name}: task: a task file needs `task: NAME`")
    if config.get("output_type", "generate_until") not in OUTPUT_TYPES:
        raise SuiteRefused(f"{name}: output_type: {config['output_type']!r} is not one of {', '.join(OUTPUT_TYPES)}")
    repeats = config.get("repeats", 1)
    if not (isinstance(repeats, int) and not isinstance(repeats, bool) and 1 <= repeats <= MAX_REPEATS):
        raise SuiteRefused(f"{name}: repeats: must be a whole number from 1 to {MAX_REPEATS}, got {repeats!r}")
    metrics = config.get("metric_list") or []
    if not isinstance(metrics, list):
        raise SuiteRefused(f"{name}: metric_list: must be a list of {{metric: NAME, ...}}")
    for i, entry in enumerate(metrics):
        if not isinstance(entry, dict) or entry.get("metric") not in registry.metric_registry:
            got = entry.get("metric") if isinstance(entry, dict) else entry
            raise SuiteRefused(
                f"{name}: metric_list[{i}].metric: {got!r} is not one of lm-eval's metrics "
                f"({', '.join(sorted(registry.metric_registry))})"
            )
        if entry.get("hf_evaluate"):
            raise SuiteRefused(f"{name}: metric_list[{i}].hf_evaluate: refused: it fetches a metric script to run")
        aggregation = entry.get("aggregation")
        if aggregation is not None and aggregation not in registry.aggregation_registry:
            raise SuiteRefused(
                f"{name}: metric_list[{i}].aggregation: {aggregation!r} is not one of lm-eval's aggregations "
                f"({', '.join(sorted(registry.aggregation_registry))})"
            )
    filters = config.get("filter_list") or []
    if not isinstance(filters, list):
        raise SuiteRefused(f"{name}: filter_list: must be a list of {{name: NAME, filter: [...]}}")
    for i, entry in enumerate(filters):
        steps = entry.get("filter") if isinstance(entry, dict) else None
        if not isinstance(steps, list) or not isinstance(entry.get("name"), str):
            raise SuiteRefused(f"{name}: filter_list[{i}]: must be {{name: NAME, filter: [{{function: NAME, ...}}]}}")
        for j, step in enumerate(steps):
            function = step.get("function") if isinstance(step, dict) else None
            if function not in registry.filter_registry or function == "custom":
                known = sorted(f for f in registry.filter_registry if f != "custom")
                raise SuiteRefused(
                    f"{name}: filter_list[{i}].filter[{j}].function: {function!r} is not one of lm-eval's filters "
                    f"({', '.join(known)})"
                )
    fewshot = config.get("fewshot_config")
    if fewshot is not None:
        if not isinstance(fewshot, dict):
            raise SuiteRefused(f"{name}: fewshot_config: must be a mapping")
        unknown = sorted(str(k) for k in fewshot if k not in FEWSHOT_KEYS)
        if unknown:
            raise SuiteRefused(f"{name}: fewshot_config: unknown keys {unknown}; it has {', '.join(FEWSHOT_KEYS)}")


def data_source(config: dict, name: str, files: dict[str, bytes]) -> tuple[str | None, list[str]]:
    """Where a task's documents come from: (repository id, data files in it) for a dataset
    repository of this hub, or (None, uploaded data files) for files shipped with the suite."""
    path = config.get("dataset_path")
    kwargs = config.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise SuiteRefused(f"{name}: dataset_kwargs: must be a mapping")
    for key in kwargs:
        if key != "data_files":
            raise SuiteRefused(
                f"{name}: dataset_kwargs.{key}: not accepted; a suite's task names its data with data_files only "
                "(a dataset repository is read at the commit the suite pins at upload)"
            )
    if config.get("dataset_name") is not None and not isinstance(config["dataset_name"], str):
        raise SuiteRefused(f"{name}: dataset_name: must be text")
    data_files = _data_files(kwargs.get("data_files"), name)
    if path in PACKAGED:
        if not data_files:
            raise SuiteRefused(
                f"{name}: dataset_path {path}: name the files shipped with the suite in dataset_kwargs.data_files"
            )
        for file in data_files:
            if file not in files:
                raise SuiteRefused(
                    f"{name}: dataset_kwargs.data_files: {file!r} is not one of the uploaded files (data shipped with "
                    "the suite is named as uploaded, without folders)"
                )
        return None, data_files
    if isinstance(path, str) and REPO_ID.fullmatch(path) and ".." not in path:
        for file in data_files:
            if file.startswith("/") or "\\" in file or any(p in ("", ".", "..") for p in file.split("/")):
                raise SuiteRefused(f"{name}: dataset_kwargs.data_files: {file!r} is not a path inside the dataset")
        return path, data_files
    raise SuiteRefused(
        f"{name}: dataset_path: {path!r} is neither a dataset repository of this hub (org/name) nor one of "
        f"{', '.join(PACKAGED)} with data files shipped with the suite; a suite's data never comes from elsewhere"
    )


def _data_files(value: object, name: str) -> list[str]:
    """The names in lm-eval's data_files (a name, a list, or split -> name or list), as plain
    names: a pattern or an address would reach past the files a suite is allowed."""
    if value is None:
        return []
    items = value.values() if isinstance(value, dict) else [value]
    names = []
    for item in items:
        for file in item if isinstance(item, list) else [item]:
            if not isinstance(file, str) or not file or any(c in file for c in "*?[]{}:"):
                raise SuiteRefused(
                    f"{name}: dataset_kwargs.data_files: {file!r} must be a file's path (no patterns, no addresses)"
                )
            names.append(file)
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        raise SuiteRefused(f"{name}: dataset_kwargs.data_files: split names must be text")
    return names


# -- the folder lm-eval reads -------------------------------------------------------------------


def materialize(
    definition: Definition,
    folder: Path,
    fetch_dataset: Callable[[str, dict, Path], None],
    final: Path | None = None,
) -> Path:
    """Write the suite under `folder` as lm-eval reads it: suite.yaml, files/ (the data files as
    uploaded, each task YAML with its includes merged in and its data pointed at the local
    copy) and datasets/<repo id>/ (each pinned dataset, written by `fetch_dataset`). `final`:
    where the folder will be once renamed into place (the task YAMLs name absolute paths)."""
    final = final or folder
    files = folder / "files"
    files.mkdir(parents=True)
    for name, data in definition.files.items():
        (files / name).write_bytes(data)
    entries = []
    for task in definition.tasks:
        entry = {k: v for k, v in task.items() if v is not None}
        if task["file"]:
            config, _ = task_config(task["file"], definition.files, definition.suite_file)
            repo_id, data_files = data_source(config, task["file"], definition.files)
            kwargs = dict(config.get("dataset_kwargs") or {})
            if repo_id is not None:
                config["dataset_path"] = str(final / "datasets" / repo_id)
                if data_files:
                    # lm-eval reads data_files relative to the task file, which is in files/
                    kwargs["data_files"] = _relocated(kwargs["data_files"], f"../datasets/{repo_id}/")
            kwargs["cache_dir"] = str(final / ".cache")  # datasets' converted copies stay in this folder
            config["dataset_kwargs"] = kwargs
            (files / task["file"]).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
            entry["file"] = f"files/{task['file']}"
        entries.append(entry)
    for repo_id, pin in definition.datasets.items():
        fetch_dataset(repo_id, pin, folder / "datasets" / repo_id)
    suite = {
        "suite": definition.name,
        "description": definition.description,
        "fewshot_seed": definition.fewshot_seed,
        "tasks": entries,
    }
    if definition.recovery_threshold is not None:
        suite["recovery_threshold"] = definition.recovery_threshold
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False, allow_unicode=True))
    return path


def _relocated(value, prefix: str):
    if isinstance(value, str):
        return prefix + value
    if isinstance(value, list):
        return [prefix + v for v in value]
    return {k: _relocated(v, prefix) for k, v in value.items()}


def check_builds(definition: Definition, fetch_dataset: Callable[[str, dict, Path], None]) -> None:
    """Build every task with lm-eval as a run would, offline, on the suite's data, and refuse
    what would fail on a worker (evals.suites.check_suite says what is checked)."""
    from evals.suites import SuiteError, check_suite, load_suite

    store.root().mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".check-", dir=store.root()))
    try:
        suite = load_suite(materialize(definition, folder, fetch_dataset))
        check_suite(suite)
    except SuiteError as exc:
        # messages name the uploaded files, not where this check put them
        raise SuiteRefused(str(exc).replace(f"{folder}/files/", "").replace(f"{folder}/", "")) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
