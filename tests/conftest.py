import os
import sys
from pathlib import Path

import pytest

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
FIXTURES = Path(os.environ.get("HUB_FIXTURES", ROOT.parent / "shared" / "fixtures"))
# The browser tests (tests/e2e, tests/security) drive Debian's chromium; one per session, as
# Playwright's sync API runs one event loop per thread.
CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
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
        pytest.skip(f"shared fixtures not found at {FIXTURES} (set HUB_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def stories260k(fixtures_dir: Path) -> Path:
    return fixtures_dir / "models" / "stories260k"


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real SmolLM2-135M-Instruct, built offline by ../shared/tools/make-smollm2."""
    import subprocess

    tool = ROOT.parent / "shared" / "tools" / "make-smollm2"
    if not tool.exists():
        pytest.skip("../shared/tools/make-smollm2 not found")
    out = subprocess.run(
        [str(tool)], check=True, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}
    ).stdout.strip().splitlines()[-1]
    return Path(out)


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


@pytest.fixture
def isolated_storage(settings, tmp_path):
    """Models and artifacts of one test live in its own temporary folder."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return tmp_path


def write_tiny_checkpoint(directory: Path, architecture: str = "LlamaForCausalLM", extra_tensor_elems: int = 0) -> Path:
    """A syntactically real Llama-family checkpoint without torch: config.json and a safetensors
    file whose data section may be a large sparse hole (for stages that must take a while)."""
    import json
    import struct

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(
        json.dumps({"architectures": [architecture], "model_type": "llama", "hidden_size": 8, "vocab_size": 16})
    )
    tensors = {"model.embed_tokens.weight": {"dtype": "F32", "shape": [16, 8], "data_offsets": [0, 512]}}
    if extra_tensor_elems:
        tensors["model.extra"] = {"dtype": "F32", "shape": [extra_tensor_elems], "data_offsets": [512, 512 + 4 * extra_tensor_elems]}
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    path = directory / "model.safetensors"
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\0" * 512)
        f.truncate(8 + len(header) + 512 + 4 * extra_tensor_elems)
    return directory
