"""lm-eval task definitions for a suite, with their data from the Hugging Face hub or a local folder.

The prompts, metrics and filters are lm-eval's own (its stock task YAML files, loaded as they
are); only where the documents come from changes. With a data directory, each task reads
`<data_dir>/<folder>/<split>.<jsonl|json|csv|txt>` and turns the rows into the layout of the
Hugging Face dataset the stock task expects (the layouts of tests/fixtures/datasets: AI2's
ARC JSONL, MosaicML's WinoGrande, the MMLU CSVs, raw WikiText-2 text). Rows already in the
Hugging Face layout pass through unchanged. Nothing here touches the network.
"""

import csv
import hashlib
import io
import json
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

from evals.suites import SuiteError, TaskSpec

Rows = list[dict]


def _arc(rows: Rows) -> Rows:
    # AI2's {question: {stem, choices: [{text, label}]}, answerKey} -> allenai/ai2_arc's flat layout
    out = []
    for r in rows:
        q = r["question"]
        if isinstance(q, str):
            out.append(r)
            continue
        out.append(
            {
                "id": r.get("id", ""),
                "question": q["stem"],
                "choices": {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]},
                "answerKey": r["answerKey"],
            }
        )
    return out


def _winogrande(rows: Rows) -> Rows:
    # MosaicML's {context_options: [sentence up to the blank with option i], continuation, gold}
    # -> allenai/winogrande's {sentence with "_", option1, option2, answer "1"|"2"}. The stock
    # task rebuilds exactly sentence[:blank] + option_i and the text after the blank, so any
    # split of the shared prefix gives the same prompts.
    out = []
    for r in rows:
        if "sentence" in r:
            out.append(r)
            continue
        a, b = r["context_options"]
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        out.append(
            {
                "sentence": f"{a[:n]}_ {r['continuation']}",
                "option1": a[n:],
                "option2": b[n:],
                "answer": str(int(r["gold"]) + 1),
            }
        )
    return out


def _wikitext(rows: Rows) -> Rows:
    # raw wiki.test.raw text -> EleutherAI/wikitext_document_level's {page}: one article per
    # top-level " = Title = " heading, lines kept as they are
    if rows and "page" in rows[0]:
        return rows
    pages, lines = [], []
    for line in "".join(r["text"] for r in rows).split("\n"):
        heading = line.replace("= = =", "===").replace("= =", "==").strip()
        if heading.startswith("= ") and heading.endswith(" ="):
            page = "\n".join(lines)
            if page.strip():
                pages.append({"page": page})
            lines = []
        lines.append(line)
    page = "\n".join(lines)
    if page.strip():
        pages.append({"page": page})
    return pages


def _mmlu(subject: str) -> Callable[[Rows], Rows]:
    def convert(rows: Rows) -> Rows:
        out = []
        for r in rows:
            if "choices" in r:
                out.append(r)
                continue
            out.append(
                {
                    "question": r["question"],
                    "subject": subject,
                    "choices": [r["choice0"], r["choice1"], r["choice2"], r["choice3"]],
                    "answer": int(r["answer"]),
                }
            )
        return out

    return convert


@dataclass(frozen=True)
class Stock:
    yaml: str  # path under lm_eval/tasks/
    folder: str  # folder under the local data directory
    convert: Callable[[Rows], Rows] | None = None


STOCK: dict[str, Stock] = {
    "arc_easy": Stock("arc/arc_easy.yaml", "arc_easy", _arc),
    "arc_challenge": Stock("arc/arc_challenge.yaml", "arc_challenge", _arc),
    "hellaswag": Stock("hellaswag/hellaswag.yaml", "hellaswag"),
    "winogrande": Stock("winogrande/default.yaml", "winogrande", _winogrande),
    "lambada_openai": Stock("lambada/lambada_openai.yaml", "lambada_openai"),
    "gsm8k": Stock("gsm8k/gsm8k.yaml", "gsm8k"),
    "truthfulqa_mc2": Stock("truthfulqa/truthfulqa_mc2.yaml", "truthfulqa"),
    "wikitext": Stock("wikitext/wikitext.yaml", "wikitext2_raw", _wikitext),
    "piqa": Stock("piqa/piqa.yaml", "piqa"),
}
GROUPS = ("mmlu",)


@dataclass
class BuiltTask:
    spec: TaskSpec
    config: dict  # an inline lm-eval task (or group) config
    data: str  # where the documents come from: "hf:<repo>[/<name>]", "local:<sha256>", "file:<sha256>"


def build(spec: TaskSpec, data_dir: Path | None) -> BuiltTask:
    if spec.file:
        return _user_task(spec)
    if spec.name == "mmlu":
        return _mmlu_group(spec, data_dir)
    stock = STOCK.get(spec.name)
    if stock is None:
        raise SuiteError(
            f"unknown task {spec.name!r}; built-in tasks: {', '.join([*STOCK, *GROUPS])} (or a local task file)"
        )
    config = _stock_config(stock.yaml)
    config["num_fewshot"] = spec.num_fewshot
    if data_dir is None:
        return BuiltTask(spec, config, _hub_data(config))
    folder = Path(data_dir) / stock.folder
    splits, digest = _read_folder(folder, spec.name)
    if stock.convert:
        splits = {name: stock.convert(rows) for name, rows in splits.items()}
    _use_local(config, splits, spec, folder)
    return BuiltTask(spec, config, f"local:{digest}")


def _mmlu_group(spec: TaskSpec, data_dir: Path | None) -> BuiltTask:
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    children, digests = [], []
    for path in sorted(root.glob("mmlu_*.yaml")):
        config = _stock_config(str(path.relative_to(root.parent.parent)))
        config["num_fewshot"] = spec.num_fewshot
        for key in ("tag", "group"):
            config.pop(key, None)
        if data_dir is not None:
            subject = config["dataset_name"]
            folder = Path(data_dir) / "mmlu"
            splits, digest = _read_mmlu(folder, subject)
            _use_local(config, {k: _mmlu(subject)(v) for k, v in splits.items()}, spec, folder)
            digests.append(digest)
        children.append(config)
    if not children:
        raise SuiteError(f"no MMLU subject files under {root}")
    group = {
        "group": "mmlu",
        "task": children,
        # the stock group's number: accuracy over all questions (subjects weighted by size)
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
        "metadata": {"version": 2},
    }
    data = f"local:{_sha256_text(''.join(digests))}" if data_dir is not None else "hf:cais/mmlu"
    return BuiltTask(spec, group, data)


def _user_task(spec: TaskSpec) -> BuiltTask:
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(spec.file)
    try:
        config = load_yaml(path, resolve_func=True)
    except Exception as exc:  # noqa: BLE001 - any parse or import failure is the file's fault
        raise SuiteError(f"{path}: cannot load the task file: {exc}") from None
    if "task" not in config or "group" in config:
        raise SuiteError(f"{path}: a task file needs `task: NAME` (groups are not supported here)")
    config.pop("tag", None)
    config["task"] = spec.name
    if spec.num_fewshot is not None:
        config["num_fewshot"] = spec.num_fewshot
    kwargs = config.get("dataset_kwargs") or {}
    # lm-eval resolves relative data files against the working directory; a task file means
    # its own folder
    files = kwargs.get("data_files")
    if files is not None:
        kwargs["data_files"] = _absolute(files, path.parent)
        config["dataset_kwargs"] = kwargs
    digest = hashlib.sha256(path.read_bytes())
    for data_file in _flatten(kwargs.get("data_files")):
        if Path(data_file).is_file():
            digest.update(Path(data_file).read_bytes())
    return BuiltTask(spec, config, f"file:{digest.hexdigest()}")


def _absolute(files, base: Path):
    if isinstance(files, str):
        return str(base / files) if not Path(files).is_absolute() else files
    if isinstance(files, list):
        return [_absolute(f, base) for f in files]
    if isinstance(files, dict):
        return {k: _absolute(v, base) for k, v in files.items()}
    return files


def _flatten(files) -> list[str]:
    if isinstance(files, str):
        return [files]
    if isinstance(files, list):
        return [f for item in files for f in _flatten(item)]
    if isinstance(files, dict):
        return [f for item in files.values() for f in _flatten(item)]
    return []


def _stock_config(relative: str) -> dict:
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    config = deepcopy(load_yaml(Path(lm_eval.__file__).parent / "tasks" / relative, resolve_func=True))
    config.pop("tag", None)
    return config


def _hub_data(config: dict) -> str:
    name = config.get("dataset_name")
    return f"hf:{config['dataset_path']}" + (f"/{name}" if name and name != "default" else "")


def _use_local(config: dict, splits: dict[str, Rows], spec: TaskSpec, folder: Path) -> None:
    """Point `config` at in-memory splits, dropping the splits the folder does not have."""
    import datasets

    dataset = datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if config.get(key) not in splits:
            config[key] = None
    if not (config.get("test_split") or config.get("validation_split")):
        raise SuiteError(
            f"{spec.name}: {folder} holds no evaluation split (found: {', '.join(sorted(splits)) or 'nothing'})"
        )
    if spec.num_fewshot and not (config.get("fewshot_split") or config.get("training_split")):
        raise SuiteError(
            f"{spec.name}: {spec.num_fewshot}-shot needs a training or few-shot split, but {folder} holds only "
            f"{', '.join(sorted(splits))}; add it (e.g. train.jsonl) or use 0 shots"
        )
    for key in ("dataset_path", "dataset_name", "dataset_kwargs"):
        config.pop(key, None)
    config["custom_dataset"] = _Splits(dataset)


class _Splits:
    """lm-eval's `custom_dataset` hook: called with the task's metadata, returns the splits."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __call__(self, **metadata):
        return self.dataset

    def __repr__(self) -> str:  # shown in lm-eval's config dump instead of an address
        return f"local splits {dict(self.dataset.num_rows)}"


_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")


def _read_folder(folder: Path, task: str) -> tuple[dict[str, Rows], str]:
    if not folder.is_dir():
        raise SuiteError(f"{task}: no local data at {folder} (expected <split>.jsonl files there)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
    if not files:
        raise SuiteError(f"{task}: {folder} holds no .jsonl, .json, .csv or .txt split files")
    digest = hashlib.sha256()
    splits = {}
    for path in files:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
        splits[path.stem] = _parse(path, data)
    return splits, digest.hexdigest()


def _read_mmlu(folder: Path, subject: str) -> tuple[dict[str, Rows], str]:
    # the fixture layout: <folder>/{test,dev}/<subject>_{test,dev}.csv
    digest = hashlib.sha256()
    splits = {}
    for split in ("test", "dev", "validation"):
        path = folder / split / f"{subject}_{split}.csv"
        if path.is_file():
            data = path.read_bytes()
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
            splits[split] = _parse(path, data)
    if not splits:
        raise SuiteError(f"mmlu: no local data for {subject} (expected {folder}/test/{subject}_test.csv)")
    return splits, digest.hexdigest()


def _parse(path: Path, data: bytes) -> Rows:
    text = data.decode("utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if path.suffix == ".json":
            rows = json.loads(text)
            return rows if isinstance(rows, list) else rows["data"]
        if path.suffix == ".csv":
            return list(csv.DictReader(io.StringIO(text, newline="")))
    except (ValueError, KeyError) as exc:
        raise SuiteError(f"{path}: cannot read it: {exc}") from None
    return [{"text": text}]


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stock_task_names() -> list[str]:
    return [*STOCK, *GROUPS]


__all__ = ["STOCK", "BuiltTask", "build", "stock_task_names"]
