"""What the whole-job benches share: a throwaway hub (SQLite and the file broker in a fresh
temporary folder, HF_HUB_OFFLINE=1) and a real `celery worker` inside `unshare -n`, a network
namespace with nothing in it, so every byte a job reads is local."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def smollm2() -> Path:
    """SmolLM2-135M-Instruct, built once per machine by tests/smollm2.py."""
    from tests.smollm2 import build

    return build()


def start_hub(prefix: str, settings: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Make the hub's folder, point this process and the worker's environment at it, migrate,
    and set Django up here. Returns the folder and the worker's environment."""
    var = Path(tempfile.mkdtemp(prefix=prefix))
    env = {
        **os.environ,
        "HUB_VAR_DIR": str(var),
        **settings,
        "HF_HOME": str(var / "hf"),
        "HF_HUB_OFFLINE": "1",
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "PYTHONPATH": str(ROOT),
    }
    for key in ("DATABASE_URL", "CELERY_BROKER_URL"):  # SQLite and the file broker: nothing to reach
        env.pop(key, None)
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    return var, env


def run_worker_until(job, kinds: list[str], var: Path, env: dict[str, str], timeout: float) -> bool:
    """Run one worker until every stage of `kinds` in `job` has ended (or `timeout` seconds);
    its log goes to var/worker.log. Returns whether it ran in a network namespace."""
    from hub.jobs.models import Stage
    from workers.celery import worker_command

    cmd = worker_command("bench@localhost")
    isolated = bool(shutil.which("unshare")) and subprocess.run(["unshare", "-n", "true"]).returncode == 0
    if isolated:
        cmd = ["unshare", "-n", *cmd]
    else:
        print("warning: no network namespace here; the worker runs with HF_HUB_OFFLINE=1 only", file=sys.stderr)
    with (var / "worker.log").open("w") as log:
        worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout:
                if all(s.status in Stage.FINAL for s in job.stages.filter(kind__in=kinds)):
                    break
                time.sleep(5)
        finally:
            worker.terminate()
            worker.wait(60)
    return isolated


def finish(var: Path, complete: bool, keep: bool) -> None:
    """Exit 1 naming the worker's log when the job fell short; otherwise remove its folder unless
    asked to keep it."""
    if not complete:
        print(f"incomplete; worker log: {var / 'worker.log'}", file=sys.stderr)
        sys.exit(1)
    if not keep:
        shutil.rmtree(var, ignore_errors=True)


def stage_times(stages) -> dict[str, dict]:
    return {
        s.name: {
            "status": s.status,
            "seconds": round((s.finished_at - s.started_at).total_seconds(), 1)
            if s.finished_at and s.started_at
            else None,
            "error": s.error[:300],
        }
        for s in stages
    }
