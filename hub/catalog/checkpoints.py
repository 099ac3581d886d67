"""Inspect a checkpoint directory without importing torch: the web process and the fetch stage
both use this to refuse what we must not load and to record what we keep."""

import hashlib
import json
import math
import re
import struct
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from common.checkpoint_files import NotACheckpointFile, check_checkpoint_folder
from common.support import SUPPORTED_ARCHITECTURES

# Files that are unpickled when loaded, and so can run code on the machine that loads them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
# Upper bounds on the sizes a config may declare, several times the largest Llama-family models
# (Llama 3.1 405B: hidden 16384, 126 layers; vocabularies up to 256k): a config past them is a
# mistake or an attack, and the engine would try to allocate what it declares.
CONFIG_LIMITS = {
    "hidden_size": 1 << 16,
    "intermediate_size": 1 << 18,
    "num_hidden_layers": 1024,
    "num_attention_heads": 1024,
    "num_key_value_heads": 1024,
    "head_dim": 1024,
    "vocab_size": 1 << 22,
    "max_position_embeddings": 1 << 24,
}


class CheckpointError(ValueError):
    """A checkpoint we refuse, with a message meant for the person who submitted it."""


@dataclass
class CheckpointInfo:
    architecture: str
    model_type: str
    config: dict
    num_parameters: int
    dtype: str
    size_bytes: int
    license: str
    files: list[dict] = field(default_factory=list)  # [{path, size, sha256}]


def read_safetensors_header(path: Path) -> dict:
    """Parse and check a safetensors header: every tensor must lie inside the file, without overlap."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path.name}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{path.name}: malformed safetensors header (declared length {n} bytes, file {size})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting too
        raise CheckpointError(f"{path.name}: malformed safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: malformed safetensors header (not a JSON object)")
    data_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{path.name}: __metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{path.name}: tensor {name!r} has a malformed entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BYTES:
            raise CheckpointError(f"{path.name}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path.name}: tensor {name!r} has a malformed shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len
        ):
            raise CheckpointError(f"{path.name}: tensor {name!r} has data offsets outside the file")
        if offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{path.name}: tensor {name!r} size does not match its shape and dtype")
        spans.append(offsets)
    # as the format requires (and the safetensors library checks): tensors tile the data section
    # exactly, with no overlap, hole or trailing bytes that could hide a second file
    covered = 0
    for begin, end in sorted(spans):
        if begin < covered:
            raise CheckpointError(f"{path.name}: tensors overlap in the data section")
        if begin > covered:
            raise CheckpointError(f"{path.name}: bytes {covered} to {begin} of the data section belong to no tensor")
        covered = end
    if covered != data_len:
        raise CheckpointError(f"{path.name}: the data section has {data_len - covered} bytes past its last tensor")
    return header


def sha256_file(path: Path, on_chunk: Callable[[int], None] | None = None, copy_to: Path | None = None) -> str:
    """Hash a file in 1 MiB chunks, copying it on the way when asked (one read for both)."""
    digest = hashlib.sha256()
    with path.open("rb") as f, copy_to.open("xb") if copy_to else nullcontext() as out:
        while block := f.read(1 << 20):
            digest.update(block)
            if out:
                out.write(block)
            if on_chunk:
                on_chunk(len(block))
    return digest.hexdigest()


def manifest_sha(files: list[dict]) -> str:
    """A content address for a whole checkpoint: the hash of its sorted (path, sha256) list."""
    lines = "".join(f"{f['path']}\0{f['sha256']}\n" for f in sorted(files, key=lambda f: f["path"]))
    return hashlib.sha256(lines.encode()).hexdigest()


def list_files(directory: Path) -> list[Path]:
    """Regular files under directory, skipping dot-folders such as huggingface_hub's .cache."""
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts[:-1]) or rel.parts[0].startswith(".cache"):
            continue
        if path.is_symlink():
            raise CheckpointError(f"{rel}: symbolic links are not accepted in a checkpoint")
        if path.is_file():
            out.append(path)
    return out


def check_config(config_path: Path) -> dict:
    if not config_path.is_file():
        raise CheckpointError("config.json is missing: not a Hugging Face checkpoint directory")
    try:
        config = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError("config.json must hold a JSON object")
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not architectures:
        raise CheckpointError("config.json names no architecture ('architectures' is missing)")
    unsupported = [a for a in architectures if a not in SUPPORTED_ARCHITECTURES]
    if unsupported:
        raise CheckpointError(
            f"unsupported architecture {', '.join(map(str, unsupported))}: the hub handles the Llama family and Gemma "
            f"({', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    for key, limit in CONFIG_LIMITS.items():
        value = config.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= limit):
            raise CheckpointError(f"config.json: {key} = {value!r} is out of range (an integer from 1 to {limit})")
    return config


def refuse_pickles(names: list[str]) -> None:
    pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise CheckpointError(
            f"pickle files are refused ({', '.join(pickles[:5])}{' ...' if len(pickles) > 5 else ''}): "
            "loading them can run arbitrary code; the hub accepts safetensors weights only"
        )


def card_license(readme: Path) -> str:
    if not readme.is_file():
        return ""
    match = re.match(r"---\s*\n(.*?)\n---", readme.read_text(errors="replace"), re.S)
    if match:
        lic = re.search(r"^license:\s*(\S+)\s*$", match.group(1), re.M)
        if lic:
            return lic.group(1).strip("'\"")
    return ""


def inspect_checkpoint(directory: Path) -> CheckpointInfo:
    """Check a checkpoint without reading its weights: no pickles, a supported architecture,
    sound safetensors headers, every file it names (shards, tokenizer) present in it and no link
    leading out of it. Files are listed but not hashed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory.name!r} is not a directory")
    try:
        check_checkpoint_folder(directory)
    except NotACheckpointFile as exc:
        raise CheckpointError(str(exc)) from None
    paths = list_files(directory)
    names = [str(p.relative_to(directory)) for p in paths]
    refuse_pickles(names)
    config = check_config(directory / "config.json")
    weights = [p for p in paths if p.suffix == ".safetensors"]
    if not weights:
        raise CheckpointError("no *.safetensors weights found: the hub accepts safetensors weights only")
    num_parameters = 0
    bytes_by_dtype: dict[str, int] = {}
    for path in weights:
        for name, entry in read_safetensors_header(path).items():
            if name == "__metadata__":
                continue
            num_parameters += math.prod(entry["shape"])
            nbytes = entry["data_offsets"][1] - entry["data_offsets"][0]
            bytes_by_dtype[entry["dtype"]] = bytes_by_dtype.get(entry["dtype"], 0) + nbytes
    return CheckpointInfo(
        architecture=config["architectures"][0],
        model_type=str(config.get("model_type", "")),
        config=config,
        num_parameters=num_parameters,
        dtype=max(bytes_by_dtype, key=bytes_by_dtype.get).lower() if bytes_by_dtype else "",
        size_bytes=sum(p.stat().st_size for p in paths),
        license=card_license(directory / "README.md"),
        files=[{"path": name, "size": p.stat().st_size} for p, name in zip(paths, names)],
    )
