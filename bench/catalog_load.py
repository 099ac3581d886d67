"""Catalog page under load: 10,000 variants in PostgreSQL, a real gunicorn server on loopback, and
20 concurrent clients asking for the catalog with a filter. Prints latency percentiles.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_bench_catalog .venv/bin/python -m bench.catalog_load

The database is created and seeded when it does not hold the asked number of variants (500 bases
with 20 variants each by default; half the variants validated with two tasks' recovery, every
base and variant benchmarked in its job's stage). Traffic goes to 127.0.0.1 only, is bounded
in count, and stops by itself."""

import argparse
import os
import random
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench.server import start_gunicorn, stop, when_up

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/hub_bench_catalog"
PATHS = {
    "filter": "/?scheme=W4A16&validated=on",
    "filter+gpu+sort=recovery": "/?gpu=8.0&validated=on&sort=recovery",
    "no filter": "/",
}


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(bases: int, per_base: int) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from hub.catalog.models import BaseModel, Variant
    from hub.jobs.models import Job, Recipe, Stage
    from hub.jobs.presets import PRESETS
    from hub.results.models import BenchmarkRun, EvalRun, Recovery

    call_command("migrate", verbosity=0)
    if Variant.objects.count() == bases * per_base:
        return
    print(f"seeding {bases} bases x {per_base} variants ...", file=sys.stderr)
    for model in (Recovery, EvalRun, BenchmarkRun, Variant, Stage, Job, BaseModel, Recipe):
        model.objects.all().delete()
    rng = random.Random(0)
    owner = User.objects.get_or_create(username="bench")[0]
    recipes = [Recipe.for_preset(name) for name in PRESETS]
    archs = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]
    base_rows = BaseModel.objects.bulk_create(
        [
            BaseModel(
                name=f"org{i % 37}/model-{i}",
                architecture=archs[i % 4],
                status=BaseModel.Status.READY,
                num_parameters=rng.choice([135e6, 1.2e9, 3e9, 8e9, 14e9, 70e9]),
                dtype="bfloat16",
                size_bytes=rng.randint(10**8, 10**11),
                private=i % 10 == 0,
                owner=owner,
            )
            for i in range(bases)
        ]
    )
    jobs = Job.objects.bulk_create([Job(base_model=b, owner=owner, status=Job.Status.DONE) for b in base_rows])
    stages = Stage.objects.bulk_create(
        [Stage(job=j, kind=Stage.Kind.BENCHMARK, status=Stage.Status.DONE, queue="gpu") for j in jobs]
    )
    variants = Variant.objects.bulk_create(
        [
            Variant(
                base=b,
                recipe=recipes[k % len(recipes)],
                job=j,
                name=f"{b.name}-{recipes[k % len(recipes)].name}-{k}",
                scheme=recipes[k % len(recipes)].scheme,
                size_bytes=rng.randint(10**8, 10**10),
                private=b.private,
                owner=owner,
                gate=Variant.Gate.VALIDATED if k % 2 == 0 else Variant.Gate.PENDING,
                files=[{"path": "model.safetensors", "size": 1, "sha256": "0" * 64}],
            )
            for b, j in zip(base_rows, jobs)
            for k in range(per_base)
        ],
        batch_size=2000,
    )
    base_runs = EvalRun.objects.bulk_create(
        [
            EvalRun(base_model=b, suite="quick", suite_version="1", engine_version="0", settings_key="k")
            for b in base_rows
        ]
    )
    base_run_of = {r.base_model_id: r for r in base_runs}
    validated = [v for v in variants if v.gate == Variant.Gate.VALIDATED]
    runs = EvalRun.objects.bulk_create(
        [EvalRun(variant=v, suite="quick", suite_version="1", engine_version="0", settings_key="k") for v in validated],
        batch_size=2000,
    )
    Recovery.objects.bulk_create(
        [
            Recovery(
                variant_run=r,
                base_run=base_run_of[v.base_id],
                task=task,
                metric="acc",
                base_value=0.5,
                variant_value=0.5 * rec,
                recovery=rec,
                recovery_low=rec,
                recovery_high=rec,
                diff=0.5 * rec - 0.5,
                threshold=0.96,
                verdict=Variant.Gate.VALIDATED if rec >= 0.96 else Variant.Gate.FAILED,
            )
            for r, v in zip(runs, validated)
            for task in ("arc_easy", "hellaswag")
            for rec in [rng.uniform(0.95, 1.0)]
        ],
        batch_size=2000,
    )
    stage_of = {s.job_id: s for s in stages}
    bench = [
        BenchmarkRun(
            base_model=b,
            job=j,
            stage=stage_of[j.pk],
            profile="chat",
            profile_version="1",
            engine_version="0",
            metrics={"output_throughput": 1000.0},
        )
        for b, j in zip(base_rows, jobs)
    ]
    bench += [
        BenchmarkRun(
            variant=v,
            job_id=v.job_id,
            stage=stage_of[v.job_id],
            profile="chat",
            profile_version="1",
            engine_version="0",
            metrics={"output_throughput": rng.uniform(900, 2500)},
        )
        for v in variants
    ]
    BenchmarkRun.objects.bulk_create(bench, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would soon: fresh bulk inserts leave the planner blind


def load(url: str, clients: int, requests: int, deadline_s: float) -> list[float]:
    """`clients` threads, each asking for the page again as soon as it has the last answer."""
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [requests]
    until = time.monotonic() + deadline_s

    def client() -> None:
        while time.monotonic() < until:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
                assert response.status == 200
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", type=int, default=500)
    parser.add_argument("--per-base", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000, help="per page")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    args = parser.parse_args()

    db = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not db.startswith("postgres"):
        sys.exit("bench/catalog_load.py measures PostgreSQL: set DATABASE_URL=postgres://...")
    ensure_database(db)
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "HUB_DEBUG": "0",
        "HUB_SECRET_KEY": "bench-only",
        "HUB_ALLOWED_HOSTS": "127.0.0.1",
        "HUB_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    seed(args.bases, args.per_base)

    from hub.catalog.models import Variant

    print(
        f"{Variant.objects.count()} variants, {args.clients} concurrent clients, gunicorn -w {args.workers}, "
        f"{os.cpu_count()} CPUs"
    )
    print("| catalog list cache | page | requests | median ms | p90 ms | p99 ms | requests/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for seconds in ("10", "0"):
        measure({**env, "HUB_CATALOG_CACHE_SECONDS": seconds}, args, f"{seconds} s" if seconds != "0" else "off")


def measure(env: dict, args: argparse.Namespace, label: str) -> None:
    server, base = start_gunicorn("-w", str(args.workers), "--log-level", "warning", env=env)
    try:
        when_up(lambda: urllib.request.urlopen(base + "/", timeout=5).read(), 20)
        for name, path in PATHS.items():
            load(base + path, args.clients, 4 * args.clients, 60)  # warm every worker's connections
            start = time.perf_counter()
            lat = sorted(load(base + path, args.clients, args.requests, 120))
            took = time.perf_counter() - start
            ms = [1000 * x for x in lat]
            print(
                f"| {label} | `{path}` ({name}) | {len(ms)} | {statistics.median(ms):.1f} | {ms[int(0.9 * len(ms))]:.1f} | "
                f"{ms[min(len(ms) - 1, int(0.99 * len(ms)))]:.1f} | {len(ms) / took:.0f} |",
                flush=True,
            )
    finally:
        stop(server)


if __name__ == "__main__":
    main()
