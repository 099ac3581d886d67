import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def slow_checkpoint(tmp_path: Path) -> "BaseModel":
    """A checkpoint whose import takes seconds even on a fast disk (4 GiB, a sparse hole in the
    source), so a stage can be caught running: killed, cancelled, cut off or timed out. 1 GiB
    took 1.1 s on CI, too close to the 1 s heartbeat that makes progress visible."""
    from hub.catalog.models import BaseModel
    from tests.conftest import write_tiny_checkpoint

    source = write_tiny_checkpoint(tmp_path / "big", extra_tensor_elems=1 << 30)
    return BaseModel.objects.create(name="org/big", source_path=str(source), architecture="LlamaForCausalLM")


def database_url() -> str:
    """The URL of the database this test runs on, for worker subprocesses to share it."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(check: Callable[[], object], timeout: float = 60, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Worker:
    """A real `celery worker` process on the test database and the configured broker."""

    def __init__(self, name: str, log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name.split('@')[0]}-{time.monotonic_ns()}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        cmd = [
            sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "cpu,gpu", "-P", "solo",
            "-n", self.name, "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path):
    """Start worker processes; every one is stopped before the test database is flushed."""
    from workers.celery import app

    with app.connection_for_write() as conn:
        for queue in ("cpu", "gpu"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue that does not exist yet holds nothing
                pass
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "HUB_VAR_DIR": str(settings.VAR_DIR),
        "HUB_MODELS_DIR": str(settings.MODELS_DIR),
        "HUB_ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "HUB_STAGE_HEARTBEAT_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
    }
    workers: list[Worker] = []

    def start(name: str = "test@localhost", **overrides: str) -> Worker:
        worker = Worker(name, tmp_path, {**env, **overrides}).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill(signal.SIGTERM)
    connection.close()


@pytest.fixture(autouse=True)
def _storage(isolated_storage):
    return isolated_storage


def run_queued(job, kind: str, worker: str = "inline@test") -> str:
    """Run a job's queued stage of `kind` in this process, through the same runner a worker uses."""
    from hub.jobs.models import Stage
    from workers.runner import execute

    stages = job.stages.filter(kind=kind, status=Stage.Status.QUEUED)
    assert stages.exists(), f"no queued {kind} stage: {list(job.stages.values_list('kind', 'status'))}"
    return [execute(s.pk, worker) for s in stages][-1]
