"""A 1 GiB file through a real gunicorn server: the stock client resumes with a Range request
after its server worker is killed mid-transfer, the bytes come out right, and the server's
memory does not grow with the file (responses are streamed). The stored object is sparse, so
the test costs little disk on the server side."""

import hashlib
import os
import re
import threading
import time
from pathlib import Path

import httpx2
import psutil
import pytest
from huggingface_hub import hf_hub_download

from hub.hfapi import storage
from hub.hfapi.models import FileSpec, Repo
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
SIZE = 1 << 30
MARKS = range(0, SIZE, 128 << 20)  # a few random blocks, so a resume at a wrong offset cannot pass


def sparse_object(tmp: Path) -> tuple[str, Path]:
    """A 1 GiB file, mostly a hole, stored as a repository object; returns its sha256."""
    path = tmp / "big"
    with path.open("wb") as f:
        f.truncate(SIZE)
        for offset in MARKS:
            f.seek(offset + 4096)
            f.write(os.urandom(4096))
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    sha256 = digest.hexdigest()
    target = storage.object_path(sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    return sha256, target


def test_it_resumes_a_1gib_download_in_constant_server_memory(gunicorn, alice, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    url, master, access_log = gunicorn
    sha256, target = sparse_object(tmp_path)
    assert target.stat().st_blocks * 512 < 16 << 20  # sparse on disk
    repo = Repo.create("alice", "big", alice, private=False)
    blob_id = storage.git_blob_id(storage.lfs_pointer(sha256, SIZE))
    repo.commit(alice, "a big file", "", None, {"big.safetensors": FileSpec(SIZE, sha256, blob_id, lfs=True)})

    with target.open("rb") as f:  # a Range in the middle of the file comes back exact
        f.seek(MARKS[3] + 4000)
        expected = f.read(200)
    part = httpx2.get(
        f"{url}/alice/big/resolve/main/big.safetensors", headers={"Range": f"bytes={MARKS[3] + 4000}-{MARKS[3] + 4199}"}
    )
    assert part.status_code == 206 and part.content == expected
    assert part.headers["Content-Range"] == f"bytes {MARKS[3] + 4000}-{MARKS[3] + 4199}/{SIZE}"

    worker = master.children()[0]
    baseline = worker.memory_info().rss
    peak = {"rss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for proc in master.children():
                try:
                    peak["rss"] = max(peak["rss"], proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.02)

    cache = tmp_path / "cache"
    result: dict = {}

    def download() -> None:
        try:
            result["path"] = hf_hub_download("alice/big", "big.safetensors", endpoint=url, cache_dir=cache)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    threads = [threading.Thread(target=sample), threading.Thread(target=download)]
    for t in threads:
        t.start()
    try:
        # kill the serving worker once a quarter of the file has arrived; gunicorn starts another
        partial = wait_for(
            lambda: [p for p in cache.rglob("*.incomplete") if p.stat().st_size > SIZE // 4], 120, "a quarter"
        )
        assert partial[0].stat().st_size < SIZE, "the download finished before it could be interrupted"
        worker.kill()
        threads[1].join(timeout=300)
        done.set()
        threads[0].join()
        assert "error" not in result, result.get("error")
        path = Path(result["path"])
        assert path.stat().st_size == SIZE
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
        assert digest.hexdigest() == sha256
    finally:
        done.set()
        for blob in cache.rglob("blobs/*"):
            blob.unlink()  # a real gigabyte on the client side: do not leave it in pytest's tmp folders

    resumed = [
        line
        for line in access_log.read_text().splitlines()
        if "GET /alice/big/resolve/main/big.safetensors" in line and " 206 " in line
    ]
    offsets = [int(m.group(1)) for line in resumed if (m := re.search(r"bytes=(\d+)-$", line))]
    assert offsets and SIZE // 4 <= offsets[0] < SIZE, access_log.read_text()
    growth = peak["rss"] - baseline
    print(
        f"server worker RSS: baseline {baseline >> 20} MiB, peak {peak['rss'] >> 20} MiB while serving {SIZE >> 20} MiB"
    )
    assert growth < 64 << 20, f"server memory grew by {growth >> 20} MiB while serving a {SIZE >> 20} MiB file"
