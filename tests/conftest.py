import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from hub.catalog.models import BaseModel

# Triton decorates kernels at import time and needs the interpreter chosen before that; on a
# machine without CUDA the interpreter is the only way the kernels run at all.
if os.environ.get("HUB_HAS_CUDA") != "1":
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
    except ImportError:
        pass

# Tests never reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("HUB_FIXTURES", ROOT / "tests" / "fixtures"))
# The browser tests (tests/e2e, tests/security) drive Debian's chromium; one per session, as
# Playwright's sync API runs one event loop per thread.
CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(config, items):
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA device")
            for item in items:
                if item.get_closest_marker("gpu"):
                    item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `make install` installs Debian's package")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test's thread; Django then refuses ORM calls
    # from it unless told the thread is not really asynchronous.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"fixtures not found at {FIXTURES} (set HUB_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def stories260k(fixtures_dir: Path) -> Path:
    return fixtures_dir / "models" / "stories260k"


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real SmolLM2-135M-Instruct, built offline once per machine (tests/smollm2.py)."""
    from tests.smollm2 import build

    return build()


@pytest.fixture(scope="session")
def smollm2_slice(smollm2: Path, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct cut to its first HUB_TEST_SMOLLM2_LAYERS decoder layers (default 2; 0
    keeps all 30): its real weights, widths, tied embeddings and tokenizer, at a fraction of the
    cost. Every decoder layer runs the same code, so depth adds time, not coverage; the full
    model's figures come from bench/ scripts and from a run with HUB_TEST_SMOLLM2_LAYERS=0."""
    layers = int(os.environ.get("HUB_TEST_SMOLLM2_LAYERS", "2"))
    if layers == 0:
        return smollm2
    from transformers import AutoConfig, AutoModelForCausalLM

    from compress.save import copy_tokenizer_files

    config = AutoConfig.from_pretrained(smollm2)
    config.num_hidden_layers = layers
    path = tmp_path_factory.mktemp("smollm2-slice")
    AutoModelForCausalLM.from_pretrained(smollm2, config=config, dtype="auto").save_pretrained(path)
    copy_tokenizer_files(smollm2, path)
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The catalog caches its rendered filters and list for a few seconds; each test starts
    without them, or one test's catalog would show in the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def isolated_storage(settings, tmp_path):
    """Models, artifacts and repositories of one test live in its own temporary folder."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.REPOS_DIR = tmp_path / "repos"
    return tmp_path


# -- shared by every folder: the cast (users and their API tokens) and real worker processes -----
# (users are made on the test's database; a test that shares it with another process, a live
# server or a worker, gets a transactional database and so do they)


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path):
    """Start worker processes; every one is stopped before the test database is flushed."""
    from django.db import connection

    from tests.helpers import Worker, database_url
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

    def start(name: str = "test@localhost", queues: str = "cpu,gpu", **overrides: str) -> Worker:
        worker = Worker(name, tmp_path, {**env, **overrides}, queues).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill(signal.SIGTERM)
    connection.close()


@pytest.fixture
def alice(db) -> "User":
    from django.contrib.auth.models import User

    return User.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(db) -> "User":
    from django.contrib.auth.models import User

    return User.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def alice_token(alice) -> str:
    from hub.api.models import ApiToken

    return ApiToken.issue(alice, "tests", ApiToken.Scope.WRITE)[1]


@pytest.fixture
def bob_token(bob) -> str:
    from hub.api.models import ApiToken

    return ApiToken.issue(bob, "tests", ApiToken.Scope.WRITE)[1]


@pytest.fixture
def staff(db) -> "User":
    from django.contrib.auth.models import User

    return User.objects.create_user("staff", password="staff-password-1", is_staff=True)


@pytest.fixture
def llama(db) -> "BaseModel":
    """A model in the catalog that every user may submit jobs for."""
    from hub.catalog.models import BaseModel

    return BaseModel.objects.create(
        name="org/llama",
        architecture="LlamaForCausalLM",
        status=BaseModel.Status.READY,
        files=[{"path": "model.safetensors", "size": 1, "sha256": "0" * 64}],
    )
