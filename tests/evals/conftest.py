import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from evals import Suite, TaskSpec

# Enough documents of each kind of request to exercise the backend, few enough for seconds on
# stories260k.
TINY = Suite(
    "tiny",
    "1",
    "test suite",
    (
        TaskSpec("arc_easy", 0, limit=6, metric="acc_norm"),
        TaskSpec("hellaswag", 0, limit=4, metric="acc_norm"),
        TaskSpec("winogrande", 0, limit=6, metric="acc"),
        TaskSpec("lambada_openai", 0, limit=6, metric="acc"),
    ),
)

TINY_YAML = """\
suite: tiny
version: "1"
description: test suite
tasks:
  - {task: arc_easy, limit: 6, metric: acc_norm}
  - {task: hellaswag, limit: 4, metric: acc_norm}
  - {task: winogrande, limit: 6, metric: acc}
  - {task: lambada_openai, limit: 6, metric: acc}
"""


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """One intra-op thread: the models here are small, and on a shared 2-core machine a
    descheduled second OpenMP thread stalls every op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "datasets"


# a chat template of the usual shape (a turn per message, then the assistant's cue), for a model
# that ships none
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="session")
def chat_stories(tmp_path_factory, stories260k: Path) -> Path:
    """stories260k with a chat template beside its tokenizer, as a chat model ships one."""
    out = tmp_path_factory.mktemp("stories260k-chat")
    for f in stories260k.iterdir():
        shutil.copy(f, out / f.name)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return out


@pytest.fixture(scope="session")
def gsm8k_data(tmp_path_factory, data_dir: Path) -> Path:
    """The fixture data with a GSM8K training split for its shots: the fixture copy holds the test
    split only, so its last 20 problems become the shots and never a question."""
    out = tmp_path_factory.mktemp("data")
    lines = (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines(keepends=True)
    (out / "gsm8k").mkdir()
    (out / "gsm8k" / "test.jsonl").write_text("".join(lines[:-20]))
    (out / "gsm8k" / "train.jsonl").write_text("".join(lines[-20:]))
    (out / "arc_easy").symlink_to(data_dir / "arc_easy")
    return out


@pytest.fixture(scope="session")
def perturbed(tmp_path_factory, stories260k: Path) -> Path:
    """A real variant of stories260k: the same checkpoint with noise on every MLP weight, so its
    scores differ from the base's on some documents."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("stories260k-perturbed")
    for f in stories260k.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, out / f.name)
    tensors = load_file(stories260k / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    for name, t in tensors.items():
        if ".mlp." in name:
            tensors[name] = t + 0.3 * t.std() * torch.randn(t.shape, generator=g)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


@contextmanager
def no_network(allowed: tuple = ()):
    """Refuses every socket connection and name lookup except unix sockets and `allowed`
    (host, port) pairs (the test database), and records the attempts."""
    attempts = []

    def hook(event: str, args: tuple) -> None:
        if not active:
            return
        if event == "socket.connect":
            sock, address = args
            if sock.family == socket.AF_UNIX or (isinstance(address, tuple) and address[:2] in allowed):
                return
            attempts.append(address)
            raise ConnectionRefusedError(f"no network in this test: connect to {address}")
        if event == "socket.getaddrinfo" and (args[0], args[1]) not in allowed:
            attempts.append(args[:2])
            raise socket.gaierror(f"no network in this test: lookup of {args[0]}")

    active = True
    sys.addaudithook(hook)  # audit hooks cannot be removed; `active` switches this one off
    try:
        yield attempts
    finally:
        active = False
