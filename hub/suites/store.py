"""The files of users' suites, stored once by sha256 under ARTIFACTS_DIR/suites/objects, apart
from the repositories' object store (whose clean-up knows nothing of suites). An object is
written to a temporary file and renamed into place, read-only, so what is there is whole."""

import hashlib
import os
import secrets
from pathlib import Path

from django.conf import settings


def root() -> Path:
    return settings.ARTIFACTS_DIR / "suites"


def object_path(sha256: str) -> Path:
    return root() / "objects" / sha256[:2] / sha256[2:]


def put(data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    target = object_path(sha256)
    if target.is_file():
        return sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{secrets.token_hex(8)}")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o444)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256


def get(sha256: str) -> bytes:
    """The object's bytes, checked against its name."""
    data = object_path(sha256).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise OSError(f"the stored suite file {sha256[:12]} no longer matches its sha256")
    return data


def remove(sha256s: set[str], keep: set[str]) -> None:
    for sha256 in sha256s - keep:
        object_path(sha256).unlink(missing_ok=True)
