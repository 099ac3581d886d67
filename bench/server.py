"""The hub's real server for the load and transfer benches: gunicorn on a free loopback port."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_gunicorn(
    *options: str, env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """gunicorn serving hub.wsgi with `options`, in a session of its own so that `stop` takes its
    workers too, told its own address; returns the process and the URL it listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    out = log.open("w") if log else subprocess.DEVNULL
    cmd = [sys.executable, "-m", "gunicorn", "hub.wsgi", "-b", f"127.0.0.1:{port}", *options]
    # the hub hands out upload and download URLs on its own address, SITE_URL
    environ = {**(env if env is not None else os.environ), "HUB_SITE_URL": url}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, url


def when_up(attempt: Callable[[], object], seconds: float = 60) -> None:
    """Call `attempt` until it stops raising: until then the server is still starting."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            attempt()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
