"""Helpers the test folders share: plain functions and classes, imported by name (the fixtures
they share live in tests/conftest.py, where pytest finds them without an import)."""

import http.server
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
from django.core.management import call_command
from django.db import connection

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from workers.celery import worker_command

ROOT = Path(__file__).resolve().parent.parent


def write_tiny_checkpoint(directory: Path, architecture: str = "LlamaForCausalLM", extra_tensor_elems: int = 0) -> Path:
    """A syntactically real Llama-family checkpoint without torch: config.json and a safetensors
    file whose data section may be a large sparse hole (for stages that must take a while)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(
        json.dumps({"architectures": [architecture], "model_type": "llama", "hidden_size": 8, "vocab_size": 16})
    )
    tensors = {"model.embed_tokens.weight": {"dtype": "F32", "shape": [16, 8], "data_offsets": [0, 512]}}
    if extra_tensor_elems:
        tensors["model.extra"] = {
            "dtype": "F32",
            "shape": [extra_tensor_elems],
            "data_offsets": [512, 512 + 4 * extra_tensor_elems],
        }
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    path = directory / "model.safetensors"
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\0" * 512)
        f.truncate(8 + len(header) + 512 + 4 * extra_tensor_elems)
    return directory


def slow_checkpoint(tmp_path: Path) -> BaseModel:
    """A checkpoint whose import takes seconds even on a fast disk (4 GiB, a sparse hole in the
    source), so a stage can be caught running: killed, cancelled, cut off or timed out. 1 GiB
    took 1.1 s on CI, too close to the 1 s heartbeat that makes progress visible."""
    source = write_tiny_checkpoint(tmp_path / "big", extra_tensor_elems=1 << 30)
    return BaseModel.objects.create(name="org/big", source_path=str(source), architecture="LlamaForCausalLM")


def submit_job(base: BaseModel, preset: str = "w8a8-int8", **fields: object) -> Job:
    """A job of one preset on base that runs no evaluation suite and no benchmark unless `fields`
    ask for them: the stages most tests are about are fetch, compress and publish."""
    return Job.submit(
        base_model=base, recipes=[Recipe.for_preset(preset)], **{"suite": "", "benchmark_profile": "", **fields}
    )


def submit_on_stories260k(stories260k: Path, **fields: object) -> Job:
    """stories260k imported into the catalog and a w8a8-int8 job on it (submit_job): the quickest
    real compress run (w8a8-int8 is per-channel, so the model's narrow layers fit it)."""
    call_command("import_model", str(stories260k))
    return submit_job(BaseModel.objects.get(name="stories260k"), **fields)


def ready_to_publish(job: Job, folder: Path, name: str, scheme: str) -> Job:
    """Record the job's fetch and compress stages done, with a variant of the checkpoint in `folder`
    as compress leaves one, and dispatch the job on to its publish stage."""
    files = [{"path": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(folder.iterdir())]
    job.stages.filter(kind__in=(Stage.Kind.FETCH, Stage.Kind.COMPRESS)).update(status=Stage.Status.DONE)
    Variant.objects.create(
        base=job.base_model,
        recipe=job.recipes.get(),
        job=job,
        name=name,
        scheme=scheme,
        local_path=str(folder),
        files=files,
        size_bytes=sum(f["size"] for f in files),
    )
    job.dispatch()
    return job


def load_from_hub(
    hub_url: str, repo_id: str, local: Path | str, tmp_path: Path, show: str, revision: str = "main"
) -> list[str]:
    """Load repo_id (at `revision`) in transformers from the hub at hub_url, check that it computes
    the same logits as the checkpoint at `local`, and return the words `print("loaded", <show>)`
    printed, `show` being an expression of the loaded `remote`. It runs in a fresh interpreter
    because huggingface_hub reads HF_ENDPOINT once, when it is imported."""
    script = f"""
import torch
from transformers import AutoModelForCausalLM
remote = AutoModelForCausalLM.from_pretrained({repo_id!r}, revision={revision!r})
local = AutoModelForCausalLM.from_pretrained({str(local)!r})
ids = torch.tensor([[1, 300, 42, 7]])
assert torch.equal(remote(ids).logits, local(ids).logits)
print("loaded", {show})
"""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_url,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


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

    def __init__(self, name: str, log_dir: Path, env: dict[str, str], queues: str = "cpu,gpu") -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name.split('@')[0]}-{time.monotonic_ns()}.log"
        self.env = env
        self.queues = queues
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        cmd = worker_command(self.name, self.queues)
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


def run_queued(job, kind: str, worker: str = "inline@test") -> str:
    """Run a job's queued stage of `kind` in this process, through the same runner a worker uses."""
    from hub.jobs.models import Stage
    from workers.runner import execute

    stages = job.stages.filter(kind=kind, status=Stage.Status.QUEUED)
    assert stages.exists(), f"no queued {kind} stage: {list(job.stages.values_list('kind', 'status'))}"
    return [execute(s.pk, worker) for s in stages][-1]


def paste(commands: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Commands a page offers, pasted as they are into a user's shell in tmp_path: the venv's
    `hf` and `python` on the PATH, an empty Hugging Face cache, and HF_HUB_DISABLE_XET only if
    the commands set it."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf")
    )
    return subprocess.run(["bash", "-ec", commands], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def folder_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def form_token(page: str) -> str:
    """The CSRF token a page's form carries."""
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


def sign_in(url: str, username: str, password: str) -> httpx2.Client:
    """An HTTP session signed in through the login form, as a browser's is."""
    client = httpx2.Client(base_url=url, timeout=60)
    page = client.get("/accounts/login/").text
    answer = client.post(
        "/accounts/login/", data={"csrfmiddlewaretoken": form_token(page), "username": username, "password": password}
    )
    assert answer.status_code == 302, answer.text
    return client


@dataclass(frozen=True)
class Request:
    """One request a Listener received."""

    method: str
    path: str
    authorization: str
    body: bytes


class Listener:
    """An HTTP server on loopback that records every request it receives (the stand-in for
    whatever a hostile user points the hub at) and answers each with `status`, `headers`, `body`."""

    def __init__(self, status: int = 204, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.requests: list[Request] = []
        seen, answer = self.requests, (status, {**(headers or {}), "Content-Length": str(len(body))}, body)

        class Handler(http.server.BaseHTTPRequestHandler):
            def record(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(Request(self.command, self.path, self.headers.get("Authorization", ""), data))
                code, extra, content = answer
                self.send_response(code)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = record

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorizations(self) -> set[str]:
        return {r.authorization for r in self.requests}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
