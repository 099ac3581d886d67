"""lm-eval task definitions for a suite, with their data from the Hugging Face hub or a local folder.

The prompts, metrics and filters are lm-eval's own (its stock task YAML files, loaded as they
are); only where the documents come from changes. With a data directory, each task reads
`<data_dir>/<folder>/<split>.<jsonl|json|csv|txt>` and turns the rows into the layout of the
Hugging Face dataset the stock task expects (the layouts of tests/fixtures/datasets: AI2's
ARC JSONL, MosaicML's WinoGrande, the MMLU CSVs, raw WikiText-2 text). Rows already in the
Hugging Face layout pass through unchanged. The Open LLM Leaderboard v2 tasks read whole dataset
repositories instead: with a data directory, the copy of `owner/name` at `<data_dir>/owner/name`.
`ifollow` is our own task, its prompts in this package. Nothing here touches the network.
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
# our own tasks (a task of ours may score with our code; a user's task file may not)
OWN = ("ifollow",)


@dataclass(frozen=True)
class Leaderboard:
    yaml: str  # the task's or its group's file under lm_eval/tasks/leaderboard/
    # what its lm-eval code imports beyond our dependencies, and the lm-eval extra that has them
    modules: tuple[str, ...] = ()
    extra: str = ""
    # NLTK data it needs (lm-eval's IFEval checker downloads what is missing as it is imported)
    nltk_data: tuple[str, ...] = ()


LEADERBOARD: dict[str, Leaderboard] = {
    "leaderboard_ifeval": Leaderboard(
        "ifeval/ifeval.yaml", ("langdetect", "immutabledict", "nltk"), "ifeval", ("tokenizers/punkt_tab",)
    ),
    "leaderboard_bbh": Leaderboard("bbh_mc/_leaderboard_bbh.yaml"),
    "leaderboard_math_hard": Leaderboard("math/_leaderboard_math.yaml", ("sympy", "math_verify", "antlr4"), "math"),
    "leaderboard_gpqa": Leaderboard("gpqa/_leaderboard_gpqa.yaml"),
    "leaderboard_musr": Leaderboard("musr/_musr.yaml"),
    "leaderboard_mmlu_pro": Leaderboard("mmlu_pro/mmlu_pro.yaml"),
}


@dataclass
class BuiltTask:
    spec: TaskSpec
    config: dict  # an inline lm-eval task (or group) config
    data: str  # where the documents come from: "hf:<repo>[/<name>]", "local:<sha256>", "file:<sha256>", "ours:<sha256>"
    # what to do when its documents cannot be loaded, beyond the error itself
    hint: str = ""


class MissingData(SuiteError):
    """Dataset repositories a task reads, of which the data directory holds no copy."""

    def __init__(self, task: str, repos: list[str], data_dir: Path) -> None:
        self.task, self.repos, self.data_dir = task, repos, data_dir
        super().__init__(f"{task}: no copy of {', '.join(repos)} under {data_dir}. {_how_to_load(repos)}")


def build_all(specs: tuple[TaskSpec, ...], data_dir: Path | None) -> list[BuiltTask]:
    """Every task of a suite; the dataset repositories missing from the data directory are named
    all at once, so that one round of copying brings them all."""
    built, missing = [], []
    for spec in specs:
        try:
            built.append(build(spec, data_dir))
        except MissingData as exc:
            missing.append(exc)
    if missing:
        where = "; ".join(f"{m.task}: {', '.join(m.repos)}" for m in missing)
        repos = sorted({r for m in missing for r in m.repos})
        raise SuiteError(
            f"no copy under {data_dir} of the dataset repositories these tasks read ({where}). {_how_to_load(repos)}"
        )
    return built


def build(spec: TaskSpec, data_dir: Path | None) -> BuiltTask:
    if spec.file:
        return _user_task(spec)
    if spec.name == "mmlu":
        return _mmlu_group(spec, data_dir)
    if spec.name == "ifollow":
        return _ifollow(spec)
    if spec.name in LEADERBOARD:
        return _leaderboard(spec, data_dir)
    stock = STOCK.get(spec.name)
    if stock is None:
        raise SuiteError(
            f"unknown task {spec.name!r}; built-in tasks: {', '.join(stock_task_names())} (or a local task file)"
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


def _ifollow(spec: TaskSpec) -> BuiltTask:
    import datasets

    from evals import ifollow

    if spec.num_fewshot:
        raise SuiteError("ifollow: a zero-shot task (its prompts are instructions, with no examples to show)")
    try:
        rows = ifollow.load_prompts()
    except (OSError, ValueError) as exc:
        raise SuiteError(f"ifollow: its prompts cannot be read: {exc}") from None
    config = {
        "task": "ifollow",
        "custom_dataset": _Splits(datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})),
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": 0,
        "process_results": ifollow.process_results,
        "generation_kwargs": {
            "until": [],
            "do_sample": False,
            "temperature": 0.0,
            "max_gen_toks": ifollow.MAX_GEN_TOKS,
        },
        "metric_list": [{"metric": ifollow.METRIC, "aggregation": "mean", "higher_is_better": True}],
        "num_fewshot": 0,
        "metadata": {"version": 1.0},
    }
    return BuiltTask(spec, config, f"ours:{hashlib.sha256(ifollow.DATA.read_bytes()).hexdigest()}")


def _leaderboard(spec: TaskSpec, data_dir: Path | None) -> BuiltTask:
    """An Open LLM Leaderboard v2 task or group as lm-eval defines it, its documents read from the
    dataset repository its files name: a copy at `<data_dir>/owner/name`, else through `datasets`
    from HF_ENDPOINT (a hub holding that repository, or huggingface.co)."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    board = LEADERBOARD[spec.name]
    path = Path(lm_eval.__file__).parent / "tasks" / "leaderboard" / board.yaml
    top = load_yaml(path, resolve_func=False)  # the plain keys: nothing of the task's code imported yet
    if "group" in top:
        named = {}
        for member in sorted(path.parent.glob("*.yaml")):
            raw = load_yaml(member, resolve_func=False)
            if "group" not in raw:
                named[raw["task"]] = member
        files = [named[name] for name in top["task"]]
    else:
        files = [path]
    repos = sorted({load_yaml(f, resolve_func=False)["dataset_path"] for f in files})
    local = None
    if data_dir is not None:
        local = {repo: Path(data_dir) / repo for repo in repos}
        missing = [repo for repo, folder in local.items() if not folder.is_dir()]
        if missing:
            raise MissingData(spec.name, missing, Path(data_dir))
    _check_needs(spec.name, board)
    children = []
    for f in files:
        config = deepcopy(load_yaml(f, resolve_func=True))
        config.pop("tag", None)
        config.pop("group", None)
        config["num_fewshot"] = spec.num_fewshot
        if local is not None:
            config["dataset_path"] = str(local[config["dataset_path"]])
        children.append(config)
    if "group" in top:
        config = {**{k: v for k, v in top.items() if k != "task"}, "task": children}
    else:
        config = children[0]
    if local is not None:
        data = f"local:{_sha256_text(''.join(_tree_digest(folder) for folder in local.values()))}"
    else:
        data = "hf:" + ",".join(repos)
    return BuiltTask(spec, config, data, hint=_how_to_load(repos))


def _how_to_load(repos: list[str]) -> str:
    return (
        f"The documents come from the dataset {'repositories' if len(repos) > 1 else 'repository'} "
        f"{', '.join(repos)}. Where there is internet access, download each (`hf download OWNER/NAME --repo-type "
        "dataset --local-dir FOLDER`), then either load it into this hub (`manage.py import_dataset FOLDER "
        "OWNER/NAME`, or `hf upload OWNER/NAME FOLDER --repo-type dataset` with HF_ENDPOINT at the hub) and "
        "evaluate with HF_ENDPOINT at the hub and no data directory, or copy FOLDER to <data directory>/OWNER/NAME "
        "(HUB_EVAL_DATA_DIR on a worker)."
    )


def _check_needs(task: str, board: Leaderboard) -> None:
    import importlib.util

    import lm_eval

    missing = [m for m in board.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SuiteError(
            f"{task}: lm-eval's code for it needs the Python packages {', '.join(missing)}, which are not installed: "
            f"pip install 'lm-eval[{board.extra}]=={lm_eval.__version__}'"
        )
    if board.nltk_data:
        import nltk

        for resource in board.nltk_data:
            try:
                nltk.data.find(resource)
            except LookupError:
                raise SuiteError(
                    f"{task}: lm-eval's checker needs NLTK's {resource} data, which is not installed (it would "
                    f"download it): python -m nltk.downloader {resource.rsplit('/', 1)[-1]}"
                ) from None


def _tree_digest(folder: Path) -> str:
    """sha256 over every file of a dataset repository's copy (not a download tool's cache)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts):
        with open(path, "rb") as f:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


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
    return [*STOCK, *GROUPS, *OWN, *LEADERBOARD]


__all__ = ["STOCK", "BuiltTask", "build", "build_all", "stock_task_names"]
