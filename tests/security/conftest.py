"""The hub as a hostile user meets it: the real server (gunicorn, DEBUG off, a real secret key)
on the test database, reached over loopback HTTP, with two ordinary users, alice and bob."""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from django.db import connection

from tests.helpers import database_url, free_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """A gunicorn process serving hub.wsgi; `url` is where it listens."""

    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(autouse=True)
def _storage(isolated_storage, transactional_db):
    """Each test's own folders, and a database the hub's other threads and processes see."""
    return isolated_storage


@pytest.fixture
def start_gunicorn(transactional_db, settings, tmp_path) -> Iterator[Callable[..., Server]]:
    """Start gunicorn as production runs it (HUB_DEBUG=0); keyword arguments are extra
    environment variables. Every server stops before the test database is flushed."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / f"gunicorn-{port}.log"
        environ = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "HUB_DEBUG": "0",
            "HUB_SECRET_KEY": "security-tests-" + "k" * 50,
            "HUB_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "HUB_HTTPS": "0",  # plain HTTP on loopback; production redirects to HTTPS
            "HUB_VAR_DIR": str(settings.VAR_DIR),
            "HUB_MODELS_DIR": str(settings.MODELS_DIR),
            "HUB_ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
            "HUB_REPOS_DIR": str(settings.REPOS_DIR),
            "HUB_SITE_URL": url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "hub.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "60"],
                cwd=ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(url, proc, log)
        servers.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {proc.returncode}:\n{server.output()}")
            try:
                httpx2.get(f"{url}/health", timeout=2)
                return server
            except httpx2.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"gunicorn did not answer within 60 s:\n{server.output()}")

    yield start
    for server in servers:
        server.stop()
    connection.close()


@pytest.fixture
def hub(start_gunicorn) -> Server:
    """One production-like hub with the default settings."""
    return start_gunicorn()


@pytest.fixture
def hf_hub(hub, monkeypatch) -> Server:
    """`hub`, for the real huggingface_hub client: tests/conftest.py keeps the client offline (off
    huggingface.co); here it may reach this hub, over LFS (the hub has no Xet)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return hub
