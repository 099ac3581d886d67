"""File contents of every repository, stored once under REPOS_DIR/objects by sha256. An object is
written to a temporary file while it is hashed, checked against the size and sha256 it was
announced with, and only then renamed into place: what is in the store is always whole and
always what its name says."""

import hashlib
import io
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

CHUNK = 1 << 20


class StorageError(ValueError):
    """Content that does not match what was announced."""


def object_path(sha256: str) -> Path:
    return settings.REPOS_DIR / "objects" / sha256[:2] / sha256[2:]


def has_object(sha256: str, size: int) -> bool:
    try:
        return object_path(sha256).stat().st_size == size
    except OSError:
        return False


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git keeps in the tree in place of an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def receive(read: Callable[[int], bytes], size: int, sha256: str | None = None) -> tuple[str, str]:
    """Stream exactly `size` bytes from `read` into the store, in bounded memory. Refuses (and
    keeps nothing) when fewer bytes come or, if `sha256` is given, when their hash differs.
    Returns (sha256, git blob id of the content)."""
    incoming = settings.REPOS_DIR / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / secrets.token_hex(16)
    digest = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % size)
    received = 0
    try:
        with tmp.open("xb") as out:
            while received < size:
                block = read(min(CHUNK, size - received))
                if not block:
                    break
                digest.update(block)
                blob.update(block)
                out.write(block)
                received += len(block)
        if received != size:
            raise StorageError(f"expected {size} bytes, received {received}")
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise StorageError(f"content hashes to sha256 {actual}, not the announced {sha256}")
        target = object_path(actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o444)
        os.replace(tmp, target)
        return actual, blob.hexdigest()
    finally:
        tmp.unlink(missing_ok=True)


def store_bytes(data: bytes) -> tuple[str, str, int]:
    """Store a small in-memory file; returns (sha256, git blob id, size)."""
    sha256, blob_id = receive(io.BytesIO(data).read, len(data))
    return sha256, blob_id, len(data)
