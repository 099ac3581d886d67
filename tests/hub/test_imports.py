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
