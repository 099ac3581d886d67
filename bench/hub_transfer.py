"""Upload and download through the hub's Hugging Face-compatible API: a real gunicorn server on
loopback, stock huggingface_hub on the client (LFS, HF_HUB_DISABLE_XET=1), one file of random
bytes. Each time is given as a ratio to a baseline run in the same process on the same file:

- upload: HfApi.upload_file vs hashing the file with sha256 and copying it once (what the
  client and the server must at least do between them);
- download: hf_hub_download vs copying the file once (and a bare streamed GET, the server's share);
- memory: the server worker's peak RSS during the download vs its RSS before.

    .venv/bin/python -m bench.hub_transfer [--mib 512]

Everything lives in a temporary folder (SQLite, objects, the client's cache) removed at the end."""

import argparse
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from bench.server import start_gunicorn, stop, when_up

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=512, help="file size in MiB")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-transfer-"))
    os.environ.update(
        HUB_VAR_DIR=str(tmp / "var"),
        DJANGO_SETTINGS_MODULE="hub.settings",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    server = None
    try:
        import django

        django.setup()
        import psutil
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from huggingface_hub import HfApi, hf_hub_download

        from hub.api.models import ApiToken

        call_command("migrate", verbosity=0)
        token = ApiToken.issue(User.objects.create_user("bench"), "bench", ApiToken.Scope.WRITE)[1]
        server, url = start_gunicorn("-w", "1", "--timeout", "600")
        api = HfApi(endpoint=url, token=token)
        when_up(lambda: api.create_repo("bench/transfer"))

        src = tmp / "weights.safetensors"
        with src.open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))

        start = time.perf_counter()
        digest = hashlib.sha256()
        with src.open("rb") as f, (tmp / "copy").open("wb") as out:
            while block := f.read(1 << 20):
                digest.update(block)
                out.write(block)
        hash_copy = time.perf_counter() - start
        (tmp / "copy").unlink()
        start = time.perf_counter()
        api.upload_file(path_or_fileobj=str(src), path_in_repo=src.name, repo_id="bench/transfer")
        upload = time.perf_counter() - start

        start = time.perf_counter()
        shutil.copyfile(src, tmp / "copy")
        copy = time.perf_counter() - start
        (tmp / "copy").unlink()
        worker = psutil.Process(server.pid).children()[0]
        before, peak, done = worker.memory_info().rss, [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], worker.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        path = hf_hub_download("bench/transfer", src.name, endpoint=url, cache_dir=tmp / "cache")
        download = time.perf_counter() - start
        done.set()
        sampler.join()
        assert Path(path).stat().st_size == src.stat().st_size
        import httpx2

        start = time.perf_counter()
        with httpx2.stream("GET", f"{url}/bench/transfer/resolve/main/{src.name}") as response:
            received = sum(len(block) for block in response.iter_bytes(1 << 20))
        raw_get = time.perf_counter() - start
        assert received == src.stat().st_size

        mib = args.mib
        print(f"file {mib} MiB")
        print(
            f"upload    {upload:6.2f} s ({mib / upload:7.1f} MiB/s)  baseline sha256+copy {hash_copy:5.2f} s  ratio {upload / hash_copy:.2f}"
        )
        print(
            f"download  {download:6.2f} s ({mib / download:7.1f} MiB/s)  baseline copy {copy:5.2f} s  ratio {download / copy:.2f}"
        )
        print(f"raw GET   {raw_get:6.2f} s ({mib / raw_get:7.1f} MiB/s)  (httpx2, bytes discarded: the server's share)")
        print(f"server worker RSS {before >> 20} MiB before, {peak[0] >> 20} MiB peak during the download")
    finally:
        if server:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
