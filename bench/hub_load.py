"""The hub under concurrent load on loopback: a real gunicorn server on PostgreSQL,
200 job submissions at once through the REST API (each with its token), then 50 snapshot_download
of a published repository at once through stock huggingface_hub. It asserts what must hold and
exits non-zero otherwise:

- every submission answered 201, and the database holds exactly those jobs, each with its
  fetch -> compress -> publish stages and its fetch stage's message on the broker (no lost job);
- every download completed, and every file of every snapshot has the sha256 it was uploaded
  with (no corrupted file).

    .venv/bin/python -m bench.hub_load [--jobs 200] [--downloads 50] [--mib 16]

The database (default hub_bench_load, dropped and created afresh), the broker (the file broker:
no worker runs, the messages are counted), the objects and the clients' caches are the bench's
own; the temporary folder and the database are removed at the end."""

import argparse
import json
import os
import shutil
import statistics
import struct
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.server import start_gunicorn, stop, when_up
from hub.catalog.checkpoints import sha256_file

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/hub_bench_load"
CHECKPOINT = ROOT / "tests" / "fixtures" / "models" / "stories260k"
BASELINE_JOBS = 10  # submitted one at a time first: the latency without load, for the ratio


def recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def random_safetensors(path: Path, mib: int) -> None:
    """A valid safetensors file of random F32 values: corruption anywhere changes its sha256."""
    n = (mib << 20) // 4
    header = json.dumps({"random": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def at_once(n: int, call) -> tuple[list, list[float], float]:
    """Run `call(i)` in n threads released together; (results, latencies in s, wall time in s)."""
    barrier = threading.Barrier(n + 1)

    def timed(i: int):
        barrier.wait()
        start = time.perf_counter()
        result = call(i)
        return result, time.perf_counter() - start

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(timed, i) for i in range(n)]
        barrier.wait()
        start = time.perf_counter()
        done = [f.result() for f in futures]
        wall = time.perf_counter() - start
    return [r for r, _ in done], [t for _, t in done], wall


def percentiles(seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    return f"p50 {statistics.median(ms):.0f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms, max {ms[-1]:.0f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200, help="concurrent job submissions")
    p.add_argument("--downloads", type=int, default=50, help="concurrent snapshot downloads")
    p.add_argument("--mib", type=int, default=16, help="size of the random weights file in the published repo")
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=12, help="threads per gunicorn worker (gthread)")
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT, help="the base model imported and published")
    args = p.parse_args()

    db = os.environ.get("HUB_BENCH_DATABASE_URL", DEFAULT_DB)
    tmp = Path(tempfile.mkdtemp(prefix="hub-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DATABASE_URL", "CELERY_"))}
    env.update(
        DATABASE_URL=db,
        HUB_VAR_DIR=str(tmp / "var"),
        DJANGO_SETTINGS_MODULE="hub.settings",
        HUB_DEBUG="0",
        HUB_SECRET_KEY="bench-only",
        HUB_ALLOWED_HOSTS="127.0.0.1",
        HUB_LOG_LEVEL="WARNING",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    os.environ.clear()
    os.environ.update(env)
    recreate_database(db)
    server = None
    try:
        import django

        django.setup()
        import httpx2
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from huggingface_hub import HfApi, snapshot_download

        from hub.api.models import ApiToken
        from hub.catalog.models import BaseModel
        from hub.jobs.models import Job, Stage

        call_command("migrate", verbosity=0)
        call_command(
            "import_model",
            str(args.checkpoint),
            "--name",
            "bench/base",
            stdout=open(os.devnull, "w"),
            stderr=open(os.devnull, "w"),
        )
        base = BaseModel.objects.get(name="bench/base")
        users = [User.objects.create_user(f"user{i}") for i in range(args.jobs + BASELINE_JOBS)]
        tokens = [ApiToken.issue(u, "load", ApiToken.Scope.WRITE)[1] for u in users]
        publisher = ApiToken.issue(User.objects.create_user("bench"), "publish", ApiToken.Scope.WRITE)[1]
        from django.db import connections

        connections.close_all()

        server, url = start_gunicorn(
            *("-w", str(args.workers), "-k", "gthread", "--threads", str(args.threads)),
            *("--timeout", "300", "--backlog", "2048", "--log-level", "warning"),
            env=env,
            log=tmp / "server.log",
        )
        api = HfApi(endpoint=url, token=publisher)
        when_up(lambda: api.create_repo("bench/published"))

        # the published repository: the imported checkpoint and a file of random weights
        folder = tmp / "published"
        shutil.copytree(args.checkpoint, folder)
        random_safetensors(folder / "random.safetensors", args.mib)
        expected = {str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()}
        api.upload_folder(folder_path=folder, repo_id="bench/published")
        repo_mib = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / (1 << 20)

        # 1. job submissions, all at once, each user with their own token
        def submit(i: int) -> tuple[int, int | None]:
            response = httpx2.post(
                f"{url}/api/v1/jobs",
                headers={"Authorization": f"Bearer {tokens[i]}"},
                timeout=300,
                json={"base": base.pk, "presets": ["w4a16"], "suite": "", "benchmark_profile": ""},
            )
            return response.status_code, response.json().get("id") if response.status_code == 201 else None

        alone, alone_times = [], []
        for i in range(args.jobs, args.jobs + BASELINE_JOBS):
            start = time.perf_counter()
            alone.append(submit(i))
            alone_times.append(time.perf_counter() - start)
        alone_s = min(alone_times)
        results, latencies, wall = at_once(args.jobs, submit)
        statuses = [s for s, _ in results + alone]
        ids = {i for _, i in results + alone if i is not None}
        print(
            f"submissions: {args.jobs} at once, {wall:.2f} s, {args.jobs / wall:.1f} req/s, {percentiles(latencies)}; "
            f"p50 {statistics.median(latencies) / alone_s:.0f}x one submission alone ({1000 * alone_s:.0f} ms, best of "
            f"{BASELINE_JOBS}); status codes {dict((s, statuses.count(s)) for s in set(statuses))}"
        )
        assert statuses == [201] * len(statuses), "a submission was refused or failed"
        jobs = Job.objects.prefetch_related("stages")
        total = args.jobs + BASELINE_JOBS
        assert set(jobs.values_list("pk", flat=True)) == ids and len(ids) == total, "the database lost or added a job"
        for job in jobs:
            kinds = sorted((s.kind, s.status) for s in job.stages.all())
            assert kinds == [("compress", "pending"), ("fetch", "queued"), ("publish", "pending")], (job.pk, kinds)
        owners = set(jobs.values_list("owner__username", flat=True))
        assert owners == {u.username for u in users}, "a job has the wrong owner"
        queued = Stage.objects.filter(kind="fetch", status="queued").count()
        messages = len(list((tmp / "var" / "broker" / "queue").glob("*.msg")))
        print(
            f"  database: {len(ids)} jobs ({BASELINE_JOBS} of them submitted alone first), each fetch (queued) -> compress -> publish; {queued} fetch stages queued, "
            f"{messages} messages on the broker"
        )
        assert messages == total, "a stage's message did not reach the broker"

        # 2. snapshot downloads of the published repository, all at once
        def download(i: int) -> dict[str, str]:
            path = Path(
                snapshot_download("bench/published", endpoint=url, cache_dir=tmp / "clients" / str(i), max_workers=2)
            )
            return {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file()}

        start = time.perf_counter()
        snapshots = [download(args.downloads)]
        alone_s = time.perf_counter() - start
        more, latencies, wall = at_once(args.downloads, download)
        snapshots += more
        corrupted = sum(
            1 for snapshot in snapshots for name, digest in expected.items() if snapshot.get(name) != digest
        )
        print(
            f"downloads: {args.downloads} snapshot_download at once of {len(expected)} files ({repo_mib:.1f} MiB), "
            f"{wall:.2f} s, {args.downloads * repo_mib / wall:.0f} MiB/s in all, {percentiles(latencies)}; p50 "
            f"{statistics.median(latencies) / alone_s:.0f}x one download alone ({1000 * alone_s:.0f} ms); "
            f"{corrupted} files differ from their sha256"
        )
        assert all(set(s) >= set(expected) for s in snapshots) and corrupted == 0, (
            "a download was incomplete or corrupted"
        )
        log = (tmp / "server.log").read_text()
        errors = [line for line in log.splitlines() if "Traceback" in line or "Error" in line or "[CRITICAL]" in line]
        print(f"server log: {len(errors)} errors" + "".join(f"\n  {line}" for line in errors[:10]))
        assert not errors, "the server logged errors"
        print(
            f"machine: {os.cpu_count()} CPUs; gunicorn -w {args.workers} -k gthread --threads {args.threads}; "
            f"PostgreSQL {db.rsplit('/', 1)[1]}"
        )
    except BaseException:
        if (tmp / "server.log").exists():
            print("server log, last lines:\n" + "\n".join((tmp / "server.log").read_text().splitlines()[-30:]))
        raise
    finally:
        if server:
            stop(server)
        from django.db import connections

        connections.close_all()
        drop_database(db)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
