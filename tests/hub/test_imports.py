import ast
import subprocess
import sys
from pathlib import Path

from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "triton", "transformers", "lm_eval", "compressed_tensors", "engine", "compress", "evals", "kernels")


def test_it_keeps_heavy_libraries_out_of_the_web_app():
    code = (
        "import sys, django; django.setup();"
        "from django.test import Client; import hub.urls, workers;"
        "from django.contrib.auth.models import User;"
        "from hub.jobs.models import Job; from hub.results.models import EvalRun; from hub.catalog.models import Variant;"
        "Client().get('/admin/login/');"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "hub.settings"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_it_has_no_missing_migrations(db):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def module_imports(package: str) -> dict[str, set[str]]:
    """Which of the package's own modules each module imports when it is first loaded (imports
    inside functions run later, on use, and cannot make a loop at load time)."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts}  # fmt: skip
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
                graph[name] |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                                for a in node.names}  # fmt: skip
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in files}
    return graph


def test_it_has_no_import_loop_between_the_hubs_modules():
    """The apps use each other's models (a variant is published into a repository, a repository
    page shows what the catalog published there), but at module level the imports form layers:
    hfapi.models, then catalog.models, then the views of both."""
    graph = module_imports("hub")
    assert "hub.catalog.models" in graph["hub.hfapi.views"]  # the scan sees the imports it should

    def loop_from(start: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(start, ())):
            if nxt in seen:
                return (*seen[seen.index(nxt) :], nxt)
            if found := loop_from(nxt, (*seen, nxt)):
                return found
        return None

    loops = {name: found for name in graph if (found := loop_from(name, (name,)))}
    assert not loops, loops
