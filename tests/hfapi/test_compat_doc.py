"""docs/hf-compat.md keeps up with the installed huggingface_hub: it names every public HfApi
method and every `hf` command, and every test it cites exists."""

import inspect
import re
from pathlib import Path

import click
from huggingface_hub import HfApi
from huggingface_hub.cli.hf import app

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "hf-compat.md").read_text()


def commands(group: click.Group, prefix: str) -> list[str]:
    """Every command under `group`, as typed ("hf repos tag create")."""
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        typed = f"{prefix} {name}"
        found += commands(command, typed) if isinstance(command, click.Group) else [typed]
    return found


def test_it_names_every_hfapi_method():
    methods = [name for name, _ in inspect.getmembers(HfApi, inspect.isfunction) if not name.startswith("_")]
    assert len(methods) > 100
    assert [m for m in methods if f"`{m}`" not in DOC] == []


def test_it_names_every_hf_command():
    typed = commands(app, "hf")
    assert "hf repos branch create" in typed

    def named(command: str) -> bool:
        words = command.split()
        # a whole family may be named at once: `hf spaces *`
        return f"`{command}`" in DOC or any(f"`{' '.join(words[:i])} *`" in DOC for i in range(2, len(words)))

    assert [c for c in typed if not named(c)] == []


def test_it_cites_only_tests_that_exist():
    cited = set(re.findall(r"(test_\w+\.py)::(test_it_\w+)", DOC))
    assert len(cited) > 20
    missing = [
        f"{file}::{test}"
        for file, test in sorted(cited)
        if not (ROOT / "tests" / "hfapi" / file).exists()
        or f"def {test}(" not in (ROOT / "tests" / "hfapi" / file).read_text()
    ]
    assert missing == []
