"""A live hub that stock huggingface_hub clients talk to, and the users and tokens they talk to
it with: pytest-django's live server (the real views over real HTTP, in the test's process), or
for modules marked `gunicorn`, the hub as it is deployed, a gunicorn server in its own process."""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import psutil
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from hub.catalog.models import BaseModel
from tests.helpers import database_url, ready_to_publish, submit_job, wait_for, write_tiny_checkpoint


@pytest.fixture(autouse=True)
def _storage(isolated_storage, transactional_db):
    """Each test's own folders, and a database the hub's other threads and processes see."""
    return isolated_storage


@pytest.fixture
def gunicorn(transactional_db, settings, tmp_path) -> Iterator[tuple[str, psutil.Process, Path]]:
    """A gunicorn server of the hub on this test's database and folders: its URL, its master
    process and its access log (request line, status, Range header)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url, log = f"http://127.0.0.1:{port}", tmp_path / "access.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "HUB_VAR_DIR": str(settings.VAR_DIR),
        "HUB_REPOS_DIR": str(settings.REPOS_DIR),
        "HUB_SITE_URL": url,
        "DJANGO_SETTINGS_MODULE": "hub.settings",
    }
    command = ["gunicorn", "hub.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "300"]
    command += ["--access-logfile", str(log), "--access-logformat", "%(r)s %(s)s %({range}i)s"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *command],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def up() -> bool:
        try:
            return httpx2.get(f"{url}/api/models/nobody/nothing").status_code == 404
        except httpx2.HTTPError:
            return False

    wait_for(up, 60, "gunicorn to serve")
    yield url, psutil.Process(proc.pid), log
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture
def hub_url(request, settings, monkeypatch) -> str:
    """The live hub's URL. tests/conftest.py puts huggingface_hub offline so that nothing reaches
    huggingface.co; these tests reach only this hub, over LFS (it has no Xet)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    if request.node.get_closest_marker("gunicorn"):
        url = request.getfixturevalue("gunicorn")[0]
    else:
        url = request.getfixturevalue("live_server").url
    settings.SITE_URL = settings.PUBLISH_LOCAL_ENDPOINT = url
    return url


@pytest.fixture
def recorded_variant_job(hub_url, alice, tmp_path, settings):
    """A job whose fetch and compress stages are recorded done, with a variant as compress
    records one (a tiny checkpoint), publishing to alice/elsewhere on this hub (configured as the
    external Hub too): for what publish writes or refuses."""
    settings.PUBLISH_HF_ENDPOINT = hub_url
    folder = write_tiny_checkpoint(tmp_path / "variant")
    (folder / "recipe.yaml").write_text("quant_stage: {}\n")
    base = BaseModel.objects.create(name="stories260k", status=BaseModel.Status.READY, architecture="LlamaForCausalLM")
    job = submit_job(base, owner=alice, publish_targets=[f"{hub_url} alice/elsewhere"])
    return ready_to_publish(job, folder, "stories260k-w8a8-int8", "W8A8")


@pytest.fixture
def private_repo(hub_url, alice_token) -> str:
    """alice/secret, alice's private repository: a config and weights, in one commit."""
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/secret", private=True)
    files = {"config.json": b"{}", "model.safetensors": b"weights"}
    api.create_commit(
        "alice/secret", [CommitOperationAdd(path, data) for path, data in files.items()], commit_message="files"
    )
    return "alice/secret"
