"""Faults a long job must survive, injected for real: the database cut off under a running
stage, the broker restarted with messages in it, the disk filling up, a stage outliving its
time limit. Each test asserts the end state: resumed or failed with the reason, nothing
half-written. (A worker killed mid-stage is in test_worker.py.)"""

import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe, Stage
from tests.helpers import run_queued, slow_checkpoint, wait_for, write_tiny_checkpoint

pytestmark = [pytest.mark.services, pytest.mark.slow]
S = Stage.Status


class CuttableProxy:
    """A TCP proxy we can cut: while cut, open connections are dropped and new ones refused."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_until = 0.0
        self.open: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self.cut_until:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            self.open += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def cut(self, seconds: float) -> None:
        self.cut_until = time.monotonic() + seconds
        for sock in self.open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open.clear()

    def close(self) -> None:
        self.stopped = True
        self.listener.close()


@pytest.fixture
def db_proxy(transactional_db):
    s = connection.settings_dict
    if not s["ENGINE"].endswith("postgresql"):
        pytest.skip("the database outage is injected on PostgreSQL (DATABASE_URL), not SQLite")
    proxy = CuttableProxy((s["HOST"] or "127.0.0.1", int(s["PORT"] or 5432)))
    yield proxy
    proxy.close()


def test_it_rides_out_a_database_outage_under_a_running_stage(start_worker, db_proxy, tmp_path):
    base = slow_checkpoint(tmp_path)
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w4a16")], suite="", benchmark_profile="")
    s = connection.settings_dict
    worker = start_worker(
        "db@localhost", DATABASE_URL=f"postgres://{s['USER']}:{s['PASSWORD']}@127.0.0.1:{db_proxy.port}/{s['NAME']}"
    )
    wait_for(
        lambda: Stage.objects.filter(job=job, kind="fetch", status=S.RUNNING, progress__gt=0).exists(),
        60,
        "fetch to be running",
    )
    db_proxy.cut(4)
    wait_for(lambda: job.stages.get(kind="fetch").status in Stage.FINAL, 120, "fetch to end")
    fetch = job.stages.get(kind="fetch")
    assert fetch.status == S.DONE and fetch.attempt == 1, fetch.error  # resumed, not re-run
    assert BaseModel.objects.get(pk=base.pk).status == BaseModel.Status.READY
    assert "database unavailable" in worker.output() or "heartbeat of stage" in worker.output()
    # handing on is the runner's next step after recording the stage done: the test may see the
    # one before the other
    wait_for(lambda: job.stages.get(kind="compress").status != S.PENDING, 30, "compress to be handed on")


@pytest.fixture
def private_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: _redis_up(port), 10, "redis to start")
        return proc

    server = {"proc": start()}

    def restart() -> None:
        server["proc"].kill()
        server["proc"].wait()
        server["proc"] = start()

    yield f"redis://127.0.0.1:{port}/0", restart
    server["proc"].kill()


def _redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def broker_at(monkeypatch):
    """Point this process's Celery app at another broker (Celery reads CELERY_BROKER_URL from
    the environment before its configuration)."""
    from workers.celery import app

    def use(url: str) -> None:
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        app.conf.broker_url = url
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
        app._pool = None
        app.amqp._producer_pool = None

    original = (app.conf.broker_url, app.conf.broker_transport_options)
    yield use
    app.conf.broker_url, app.conf.broker_transport_options = original
    app._pool = None
    app.amqp._producer_pool = None


def test_it_recovers_jobs_whose_messages_a_broker_restart_lost(
    start_worker, private_redis, broker_at, tmp_path, settings, stories260k
):
    url, restart = private_redis
    broker_at(url)
    settings.STAGE_REQUEUE_AFTER = 1
    call_command("import_model", str(stories260k))
    running = Job.submit(
        base_model=slow_checkpoint(tmp_path), recipes=[Recipe.for_preset("w4a16")], suite="", benchmark_profile=""
    )
    waiting = Job.submit(
        base_model=BaseModel.objects.get(name="stories260k"),
        recipes=[Recipe.for_preset("w4a16")],
        suite="",
        benchmark_profile="",
    )
    start_worker(
        "broker@localhost", CELERY_BROKER_URL=url
    )  # one solo worker: the second job's fetch waits in the queue
    wait_for(lambda: running.stages.get(kind="fetch").status == S.RUNNING, 60, "the first fetch to run")
    assert waiting.stages.get(kind="fetch").status == S.QUEUED
    restart()  # the queued message is gone with the old server

    wait_for(lambda: running.stages.get(kind="fetch").status == S.DONE, 120, "the running fetch to finish")
    time.sleep(1.5)
    report = Stage.reconcile()  # what the periodic reconciler does
    assert report["resent"] >= 1
    wait_for(lambda: waiting.stages.get(kind="fetch").status == S.DONE, 60, "the lost fetch to be resent and run")
    for job in (running, waiting):
        assert job.stages.get(kind="fetch").attempt == 1  # run once each: nothing lost, nothing doubled
        # and handed on through the new broker: the worker queues the next stage just after it
        # records the fetch done, in a transaction of its own
        wait_for(lambda: job.stages.get(kind="compress").status != S.PENDING, 30, "compress to be queued")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {out.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_it_fails_cleanly_when_the_disk_fills(transactional_db, small_disk, tmp_path, settings):
    settings.MODELS_DIR = small_disk / "models"
    source = write_tiny_checkpoint(tmp_path / "ckpt", extra_tensor_elems=256 * 1024)  # 1 MiB of weights
    base = BaseModel.objects.create(name="org/too-big", source_path=str(source))
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w4a16")], suite="", benchmark_profile="")
    assert run_queued(job, "fetch") == S.FAILED
    fetch = job.stages.get(kind="fetch")
    assert "No space left on device" in fetch.error
    assert BaseModel.objects.get(pk=base.pk).status == BaseModel.Status.PENDING
    assert [p for p in Path(settings.MODELS_DIR).rglob("*") if p.is_file()] == []  # nothing half-written
    assert job.stages.get(kind="compress").status == S.SKIPPED
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED


def test_it_stops_a_stage_past_its_time_limit(transactional_db, tmp_path, settings):
    settings.STAGE_TIME_LIMIT = 1
    job = Job.submit(
        base_model=slow_checkpoint(tmp_path), recipes=[Recipe.for_preset("w4a16")], suite="", benchmark_profile=""
    )
    started = time.monotonic()
    assert run_queued(job, "fetch") == S.FAILED
    assert time.monotonic() - started < 4  # stopped at the limit, not at the end of the work
    fetch = job.stages.get(kind="fetch")
    assert fetch.error == "time limit of 1 s exceeded"
    assert not [p for p in (settings.MODELS_DIR / "local").rglob("*") if p.is_file()]
