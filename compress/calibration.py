"""Calibration data: token windows cut from a local text/jsonl file or a Hugging Face dataset.

Documents are shuffled (seeded), rendered (optionally with the tokenizer's chat template),
joined and tokenized until there are enough tokens, then cut into `num_samples` windows of
`seq_len` tokens each (a BOS token first where the tokenizer adds one), the way the GPTQ paper
samples C4 / WikiText. Every window is full, so batches need no padding.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

# llm-compressor's documented default calibration set (chat data, used with the chat template)
DEFAULT_DATASET = "HuggingFaceH4/ultrachat_200k"
DEFAULT_SPLIT = {DEFAULT_DATASET: "train_sft"}
GPU_DEFAULTS = (512, 2048)
CPU_DEFAULTS = (64, 512)
_DATA_SUFFIXES = (".jsonl", ".json", ".txt")


@dataclass
class CalibrationConfig:
    dataset: str | Path | None = None  # local .txt / .jsonl / .json file or folder, or a HF dataset id
    num_samples: int | None = None  # default 512 on GPU, 64 on CPU
    seq_len: int | None = None  # default 2048 on GPU, 512 on CPU
    split: str | None = None  # HF split, or the file stem to pick inside a folder
    text_column: str = "text"
    chat_template: bool | None = None  # render a `messages` column with the tokenizer's template
    seed: int = 0

    def resolved(self, device: str) -> "CalibrationConfig":
        n, seq = GPU_DEFAULTS if device.startswith("cuda") else CPU_DEFAULTS
        dataset = self.dataset if self.dataset is not None else DEFAULT_DATASET
        chat = self.chat_template if self.chat_template is not None else dataset == DEFAULT_DATASET
        split = self.split if self.split is not None else DEFAULT_SPLIT.get(str(dataset), "train")
        return CalibrationConfig(
            str(dataset), self.num_samples or n, self.seq_len or seq, split, self.text_column, chat, self.seed
        )


class CalibrationError(ValueError):
    pass


def load_calibration(tokenizer, cfg: CalibrationConfig) -> torch.Tensor:
    """Token windows [num_samples, seq_len] (int64) for a resolved config."""
    if cfg.num_samples <= 0 or cfg.seq_len <= 1:
        raise CalibrationError("calibration needs num_samples >= 1 and seq_len >= 2")
    bos = _leading_bos(tokenizer)
    body = cfg.seq_len - (bos is not None)
    need = cfg.num_samples * body
    stream: list[int] = []
    docs = _documents(cfg)
    order = list(range(len(docs)))
    random.Random(cfg.seed).shuffle(order)
    separator = tokenizer.encode("\n\n", add_special_tokens=False)
    for i in order:
        text = _render(tokenizer, docs[i], cfg)
        if not text:
            continue
        if stream:
            stream.extend(separator)
        stream.extend(tokenizer.encode(text, add_special_tokens=False))
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise CalibrationError(
            f"calibration data {cfg.dataset} has {len(stream)} tokens, but {cfg.num_samples} samples of "
            f"{cfg.seq_len} tokens need {need}: use fewer samples, shorter sequences or more data"
        )
    windows = torch.tensor(stream[:need], dtype=torch.long).view(cfg.num_samples, body)
    if bos is not None:
        windows = torch.cat([torch.full((cfg.num_samples, 1), bos, dtype=torch.long), windows], dim=1)
    return windows


def _leading_bos(tokenizer) -> int | None:
    ids = tokenizer("a").input_ids
    return ids[0] if tokenizer.bos_token_id is not None and ids and ids[0] == tokenizer.bos_token_id else None


def _render(tokenizer, doc: str | dict, cfg: CalibrationConfig) -> str:
    if isinstance(doc, str):
        if cfg.chat_template:
            raise CalibrationError(f"{cfg.dataset}: chat_template needs rows with a `messages` list")
        return doc
    if cfg.chat_template:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            raise CalibrationError(f"{cfg.dataset}: chat_template needs rows with a `messages` list")
        if tokenizer.chat_template is None:
            raise CalibrationError("chat_template requested, but the tokenizer has no chat template")
        return tokenizer.apply_chat_template(messages, tokenize=False)
    text = doc.get(cfg.text_column)
    if not isinstance(text, str):
        raise CalibrationError(f"{cfg.dataset}: rows have no text column {cfg.text_column!r} (columns: {sorted(doc)})")
    return text


def _documents(cfg: CalibrationConfig) -> Sequence[str | dict]:
    path = Path(cfg.dataset)
    if path.exists():
        return list(_read_local(_pick_file(path, cfg.split)))
    if path.suffix in _DATA_SUFFIXES or str(cfg.dataset).startswith(("/", ".")):
        raise CalibrationError(f"calibration file {cfg.dataset} does not exist")
    return _read_hub(cfg)


def _pick_file(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix in _DATA_SUFFIXES)
    by_split = [p for p in files if p.stem == split]
    if by_split:
        return by_split[0]
    if len(files) == 1:
        return files[0]
    raise CalibrationError(f"{path}: expected one data file or one named {split}.*, found {[p.name for p in files]}")


def _read_local(path: Path) -> Iterator[str | dict]:
    if path.suffix == ".txt":
        yield path.read_text()
    elif path.suffix == ".jsonl":
        with path.open() as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    elif path.suffix == ".json":
        rows = json.loads(path.read_text())
        yield from rows if isinstance(rows, list) else [rows]
    else:
        raise CalibrationError(f"{path}: calibration files must be .txt, .jsonl or .json")


def _read_hub(cfg: CalibrationConfig) -> Sequence[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(str(cfg.dataset), split=cfg.split)
    except Exception as e:
        raise CalibrationError(f"could not load calibration dataset {cfg.dataset!r} (split {cfg.split!r}): {e}") from e
    return ds  # indexable without loading every row
