"""Which engine ran: recorded with every evaluation and benchmark, so that runs are compared only
when the same engine and kernels produced them."""

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("engine", "kernels")


def engine_version() -> str:
    """The project version plus a digest of the engine and kernel sources that ran."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    try:
        project = version("modelhub")
    except PackageNotFoundError:  # run from a checkout
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    digest = hashlib.sha256()
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"{project}+{digest.hexdigest()[:12]}"
