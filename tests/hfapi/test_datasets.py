"""Dataset repositories: the same storage, access rules and endpoints as model repositories,
filled with the stock `hf upload --repo-type dataset` or `manage.py import_dataset`, read with
HfApi and `datasets.load_dataset` through HF_ENDPOINT, from a network namespace with no other route."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hub.hfapi.models import Repo
from tests.relay import unix_to_tcp

pytestmark = pytest.mark.gunicorn

ROOT = Path(__file__).resolve().parents[2]
ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(12)]
CARD = "---\nlicense: cc-by-4.0\ntags:\n- arithmetic\n---\n# Sums\n"


def write_dataset(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:8]))
    (folder / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[8:]))
    (folder / "README.md").write_text(CARD)
    return folder


def client_env(hub_url: str, tmp_path: Path, token: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HF_ENDPOINT": hub_url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(ROOT),
    }
    return env | ({"HF_TOKEN": token} if token else {})


def test_it_loads_a_dataset_uploaded_with_the_cli_from_a_network_namespace(hub_url, alice_token, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("this machine does not allow a network namespace")
    folder = write_dataset(tmp_path / "sums")
    env = client_env(hub_url, tmp_path, alice_token)
    upload = subprocess.run(
        ["hf", "upload", "alice/sums", str(folder), "--repo-type", "dataset"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert upload.returncode == 0, upload.stderr[-2000:]
    assert Repo.objects.get(namespace="alice", name="sums").type == Repo.DATASET

    port = urlsplit(hub_url).port
    load = (
        "import datasets, json; d = datasets.load_dataset('alice/sums'); "
        "print(json.dumps({s: d[s].to_list() for s in sorted(d)}))"
    )
    sock = tmp_path / "hub.sock"
    with unix_to_tcp(sock, port):
        out = subprocess.run(
            ["unshare", "-n", sys.executable, "-m", "tests.relay", str(port), str(sock), sys.executable, "-c", load],
            env=client_env(f"http://127.0.0.1:{port}", tmp_path), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == {"test": ROWS[8:], "train": ROWS[:8]}


def test_it_imports_a_folder_as_a_dataset(hub_url, tmp_path, alice):
    call_command("import_dataset", str(write_dataset(tmp_path / "sums")), "alice/sums", "--user", "alice")
    api = HfApi(endpoint=hub_url, token=False)
    info = api.dataset_info("alice/sums")
    assert info.id == "alice/sums" and info.tags == ["arithmetic"] and info.card_data.license == "cc-by-4.0"
    assert sorted(s.rfilename for s in info.siblings) == [
        ".gitattributes",
        "README.md",
        "data/test.jsonl",
        "data/train.jsonl",
    ]
    assert [d.id for d in api.list_datasets()] == ["alice/sums"] and list(api.list_models()) == []
    path = hf_hub_download("alice/sums", "data/test.jsonl", repo_type="dataset", endpoint=hub_url, cache_dir=tmp_path)
    assert [json.loads(line) for line in Path(path).read_text().splitlines()] == ROWS[8:]

    # a second import is a new commit on the same repository
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "extra.csv").write_text("a,b\n1,2\n")
    call_command("import_dataset", str(tmp_path / "more"), "alice/sums")
    assert "extra.csv" in api.list_repo_files("alice/sums", repo_type="dataset")
    assert len(api.list_repo_commits("alice/sums", repo_type="dataset")) == 3


def test_it_refuses_folders_it_cannot_import_whole(hub_url, tmp_path):
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "rows.jsonl").write_text("{}\n")
    (tmp_path / "linked" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(CommandError, match="passwd: not a regular file"):
        call_command("import_dataset", str(tmp_path / "linked"), "ops/linked")
    with pytest.raises(CommandError, match="reserved"):
        call_command("import_dataset", str(write_dataset(tmp_path / "sums")), "datasets/sums")
    assert not Repo.objects.exists()


def test_it_keeps_datasets_and_models_apart_under_the_same_rules(hub_url, alice_token, bob_token):
    alice, bob = HfApi(endpoint=hub_url, token=alice_token), HfApi(endpoint=hub_url, token=bob_token)
    alice.create_repo("alice/same", repo_type="dataset", private=True)
    alice.create_repo("alice/same")  # a model of the same id is another repository
    alice.upload_file(path_or_fileobj=b"a,b\n", path_in_repo="rows.csv", repo_id="alice/same", repo_type="dataset")
    assert "rows.csv" not in alice.list_repo_files("alice/same")
    assert "rows.csv" in alice.list_repo_files("alice/same", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        bob.dataset_info("alice/same")
    with pytest.raises(RepositoryNotFoundError):
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="alice/same", repo_type="dataset")
    assert [d.id for d in alice.list_datasets(author="alice")] == ["alice/same"]
    assert [d.id for d in bob.list_datasets()] == []
    with pytest.raises(HfHubHTTPError, match="not 'space'"):
        alice.create_repo("alice/app", repo_type="space", space_sdk="gradio")
    alice.delete_repo("alice/same", repo_type="dataset")
    assert alice.model_info("alice/same").id == "alice/same"
