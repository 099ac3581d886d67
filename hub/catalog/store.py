"""Checkpoints on the hub's disk: written into a temporary folder, hashed, then renamed into a
content-addressed place, so a crash never leaves a half-written snapshot behind and what is
recorded never changes afterwards."""

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from common.checkpoint_files import NotACheckpointFile, checkpoint_file
from common.work import CancelCheck, Cancelled, Progress
from hub.catalog.checkpoints import CheckpointError, CheckpointInfo, inspect_checkpoint, manifest_sha, sha256_file

REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
# A branch, tag, `refs/pr/N` or commit sha: git's ref alphabet, without what git itself refuses.
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_repo_name(name: str) -> str:
    """`name` or `owner/name` in the Hub's alphabet; refuses anything that could leave the folder."""
    if not REPO_NAME.fullmatch(name) or ".." in name or name.endswith((".", "-")):  # fullmatch: `$` admits a final \n
        raise CheckpointError(
            f"invalid model name {name!r}: use 'name' or 'owner/name' with letters, digits, '.', '_' and '-'"
        )
    return name


def check_revision(revision: str) -> str:
    """A revision the Hub could have: it is sent to the Hub and shown in command lines."""
    if (
        not REVISION.fullmatch(revision)
        or ".." in revision
        or "//" in revision
        or revision.endswith(("/", ".", ".lock"))
    ):
        raise CheckpointError(
            f"invalid revision {revision!r}: use a branch, tag or commit sha (letters, digits, '.', '_', '-', '/')"
        )
    return revision


def _hasher(
    total: int, progress: Progress | None, verb: str, cancelled: CancelCheck | None = None
) -> Callable[[int], None]:
    done = 0

    def on_chunk(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done / max(total, 1), f"{verb} {done >> 20} / {total >> 20} MiB")
        if cancelled and cancelled():
            raise Cancelled(f"cancelled while {verb} files")

    return on_chunk


def hash_into_place(
    source: Path,
    dest_root: Path,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    copy: bool = True,
) -> tuple[CheckpointInfo, Path]:
    """Check `source`, hash every file (copying it into a temporary folder when `copy`), and
    move the result to `dest_root/<manifest sha>`. Returns the info and the final path."""
    info = inspect_checkpoint(source)  # refuse before reading gigabytes
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest_root)) if copy else source
    try:
        on_chunk = _hasher(info.size_bytes, progress, "copying" if copy else "hashing", cancelled)
        for entry in info.files:
            target = tmp / entry["path"] if copy else None
            if target:
                target.parent.mkdir(parents=True, exist_ok=True)
            entry["sha256"] = sha256_file(file_of(source, entry["path"]), on_chunk, copy_to=target)
        dest = dest_root / manifest_sha(info.files)
        if dest.exists():
            verify_checkpoint(dest, info.files)
            if copy:
                shutil.rmtree(tmp)
        else:
            tmp.rename(dest)
        return info, dest
    except BaseException:
        if copy:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify_checkpoint(path: Path, files: list[dict], progress: Progress | None = None) -> None:
    """Re-hash a stored checkpoint against what was recorded when it was stored."""
    on_chunk = _hasher(sum(f["size"] for f in files), progress, "verifying")
    for entry in files:
        try:
            target = file_of(path, entry["path"])
        except CheckpointError:
            raise CheckpointError(f"the stored checkpoint lost {entry['path']}") from None
        if sha256_file(target, on_chunk) != entry["sha256"]:
            raise CheckpointError(f"the stored checkpoint's {entry['path']} no longer matches its sha256")


def file_of(folder: Path, name: str) -> Path:
    """`name` as a file inside the checkpoint `folder` (links resolved), or CheckpointError."""
    try:
        return checkpoint_file(folder, name)
    except NotACheckpointFile as exc:
        raise CheckpointError(str(exc)) from None


def local_models_root(name: str) -> Path:
    return settings.MODELS_DIR / "local" / check_repo_name(name)


def hf_models_root(repo_id: str) -> Path:
    return settings.MODELS_DIR / "hf" / check_repo_name(repo_id)
