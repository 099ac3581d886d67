"""Which files belong to a checkpoint folder. A checkpoint names files itself (the shards of its
`model.safetensors.index.json`, the tokenizer files of its `tokenizer_config.json`), and any of
its files may be a link: followed as they are, both reach whatever the process may read, such as
another user's weights. Every reader of a checkpoint (the hub's fetch, the engine, compress,
evals) asks here first, and refuses in the same words whether or not the outside path exists.

Plain Python, no torch and no Django: the hub's web process and the libraries both import it."""

import json
import os
from pathlib import Path

INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"


class NotACheckpointFile(ValueError):
    """A name or a file that leads outside its checkpoint folder (or to nothing in it)."""


def checkpoint_file(folder: Path | str, name: object, named_in: str = "") -> Path:
    """The regular file `name` inside `folder`, with every link resolved; anything else (an
    absolute path, `..` out of the folder, a link pointing outside, a missing file) is refused
    with one message that says nothing about the filesystem beyond the name given."""
    where = f"{named_in}: " if named_in else ""
    refusal = NotACheckpointFile(f"{where}{name!r} is not a file of this checkpoint")
    if not isinstance(name, str) or not name or "\0" in name or os.path.isabs(name):
        raise refusal
    root = Path(folder).resolve()
    try:
        path = (root / name).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a loop of links
        raise refusal from None
    if not path.is_relative_to(root) or not path.is_file():
        raise refusal
    return path


def referenced_names(folder: Path) -> list[tuple[str, object]]:
    """(metadata file, name) for each file the checkpoint's metadata tells a loader to open:
    transformers and the engine open every shard of the index, and transformers' tokenizer opens
    one of `fast_tokenizer_files` (its vocabulary-file fields in tokenizer_config.json it replaces
    with the fixed names itself)."""
    names: list[tuple[str, object]] = []
    for meta, key, kind in ((INDEX_NAME, "weight_map", dict), (TOKENIZER_CONFIG_NAME, "fast_tokenizer_files", list)):
        path = folder / meta
        if not path.exists() and not path.is_symlink():
            continue
        checkpoint_file(folder, meta)
        try:
            value = json.loads(path.read_text()).get(key)
        except (UnicodeDecodeError, ValueError, AttributeError, RecursionError):
            raise NotACheckpointFile(f"{meta} is malformed") from None
        if value is None and kind is list:  # an index must have its weight_map, a tokenizer need not
            continue
        listed = list(value.values() if isinstance(value, dict) else value) if isinstance(value, kind) else None
        if listed is None or not all(isinstance(name, str) for name in listed):
            raise NotACheckpointFile(f"{meta} is malformed ({key} must list file names)")
        names += [(meta, name) for name in dict.fromkeys(listed)]
    return names


def check_checkpoint_folder(folder: Path | str) -> list[tuple[str, Path]]:
    """Refuse a checkpoint folder holding a link that leads outside it, or whose metadata names
    a file outside it (or none at all); return (metadata file, resolved file) for each file named."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotACheckpointFile(f"{folder.name!r} is not a checkpoint folder")
    root = folder.resolve()
    for here, dirs, files in os.walk(root):  # links to folders are listed here, not followed
        for entry in (*dirs, *files):
            path = Path(here, entry)
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                target = None
            if target is None or not target.is_relative_to(root):
                raise NotACheckpointFile(f"{str(path.relative_to(root))!r} is not a file of this checkpoint")
    return [(meta, checkpoint_file(root, name, named_in=meta)) for meta, name in referenced_names(root)]


def weight_files(folder: Path | str) -> list[Path]:
    """The safetensors files holding a checkpoint's weights, checked as `check_checkpoint_folder`
    checks them: the shards its index names or, without an index, its `*.safetensors` files.
    Empty when it has none."""
    folder = Path(folder)
    named = check_checkpoint_folder(folder)
    if (folder / INDEX_NAME).is_file():
        return sorted({path for meta, path in named if meta == INDEX_NAME})
    return [checkpoint_file(folder, p.name) for p in sorted(folder.glob("*.safetensors")) if p.is_file()]
