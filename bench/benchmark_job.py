"""A whole job's benchmark stages through a real worker with no network: import a base,
compress it with each recipe, benchmark base and variant side by side on a workload profile
(no eval suite), and print one row per BenchmarkRun with its speedups over the base measured
in the same stage. Exits 1 when a stage fails, or when a runnable run lacks a metric or a
speedup.

    python bench/benchmark_job.py [--model DIR] [--recipes w8a8-int8,fp8-dynamic] [--profile chat] \
        [--scale S] [--threads 1] [--json OUT]

The hub runs on SQLite and the file broker in a fresh temporary folder; the worker runs inside
`unshare -n` (a network namespace with nothing in it) with HF_HUB_OFFLINE=1. Default model:
SmolLM2-135M-Instruct built by tests/smollm2.py. The scale defaults to the stage's own
(1/8 of the profile's lengths and requests on a CPU).
"""

import argparse
import json
import sys
from pathlib import Path

# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.offline_job import FIXTURES, finish, run_worker_until, smollm2, stage_times, start_hub  # noqa: E402
from engine.metrics import REPORTED  # noqa: E402

LATENCIES = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2el_ms", "E2EL"))


def missing_metrics(metrics: dict) -> list[str]:
    return [k for k in REPORTED if metrics.get(k) in (None, {})]


def row(run, gains: dict | None) -> dict:
    m = run.metrics
    out = {
        "model": str(run.model),
        "stage": run.stage.name if run.stage else "",
        "runnable": run.runnable,
        "reason": run.reason,
        "missing": missing_metrics(m) if run.runnable else [],
    }
    if not run.runnable:
        return out
    for key, _ in LATENCIES:
        out[key] = {s: round(m[key][s], 2) for s in ("mean", "median", "p90", "p99")}
    out.update(
        completed=m["completed"],
        req_per_s=round(m["request_throughput"], 3),
        out_tok_per_s=round(m["output_throughput"], 1),
        total_tok_per_s=round(m["total_token_throughput"], 1),
        max_concurrent=m["max_concurrent_requests"],
        max_running=m["max_running_requests"],
        preemptions=m["preemptions"],
        weights_mib=round(m["weights_bytes"] / 2**20, 1),
        kv_tokens=m["kv_capacity_tokens"],
        peak_mib=round(m["peak_memory_bytes"] / 2**20, 1),
    )
    if gains is not None:
        out["speedup"] = {k: v for k, v in gains.items() if isinstance(v, dict) and "median" in v}
        out["memory_ratio"] = {k: round(v, 3) for k, v in gains["memory"].items()}
    return out


def markdown(rows: list[dict]) -> str:
    """One line per run: latencies as mean / median / p90 / p99 ms, then throughput and memory,
    then the variant's ratios over the base of its stage (> 1 is better; memory plain)."""
    head = (
        "| run | stage | TTFT ms | TPOT ms | ITL ms | E2EL ms | req/s | out tok/s | total tok/s "
        "| weights MiB | KV tokens | peak MiB | speedup (out tok/s, TTFT, TPOT, ITL, E2EL median) | weights ratio |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if not r["runnable"]:
            lines.append(f"| {r['model']} | {r['stage']} | not runnable here: {r['reason']} |")
            continue
        lat = [" / ".join(f"{r[k][s]:.1f}" for s in ("mean", "median", "p90", "p99")) for k, _ in LATENCIES]
        s = r.get("speedup")
        gains = (
            ", ".join(
                s[k]["summary"]
                for k in ("output_throughput", "ttft_median", "tpot_median", "itl_median", "e2el_median")
            )
            if s
            else "base"
        )
        weights = f"{r['memory_ratio']['weights_bytes']:.2f}" if s else "-"
        lines.append(
            f"| {r['model']} | {r['stage']} | {' | '.join(lat)} | {r['req_per_s']:.3f} | {r['out_tok_per_s']:.1f} "
            f"| {r['total_tok_per_s']:.1f} | {r['weights_mib']:.1f} | {r['kv_tokens']} | {r['peak_mib']:.1f} "
            f"| {gains} | {weights} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path)
    p.add_argument("--recipes", default="w8a8-int8,fp8-dynamic")
    p.add_argument("--profile", default="chat")
    p.add_argument("--scale", type=float, help="profile scale (default: the stage's, 1/8 on a CPU)")
    p.add_argument("--threads", type=int, default=1, help="torch threads while benchmarking")
    p.add_argument("--calibration", default=str(FIXTURES / "datasets" / "wikitext2_raw" / "test.txt"))
    p.add_argument("--calibration-samples", type=int, default=16)
    p.add_argument("--calibration-seq-len", type=int, default=128)
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--keep", action="store_true", help="keep the temporary hub folder")
    p.add_argument("--json", type=Path, help="write the rows as JSON")
    a = p.parse_args()
    model = a.model or smollm2()
    var, env = start_hub(
        "benchmark-job-",
        {
            "HUB_CALIBRATION_DATASET": a.calibration,
            "HUB_CALIBRATION_SAMPLES": str(a.calibration_samples),
            "HUB_CALIBRATION_SEQ_LEN": str(a.calibration_seq_len),
            "HUB_BENCHMARK_THREADS": str(a.threads),
            "HUB_BENCHMARK_SCALE": str(a.scale or 0),
            "OMP_NUM_THREADS": str(a.threads),
        },
    )
    from django.core.management import call_command

    from hub.catalog.models import BaseModel
    from hub.jobs.models import Job, Recipe, Stage
    from hub.results.models import BenchmarkRun

    call_command("import_model", str(model), name="bench/base")
    job = Job.submit(
        base_model=BaseModel.objects.get(name="bench/base"),
        recipes=[Recipe.for_preset(r) for r in a.recipes.split(",")],
        suite="",
        benchmark_profile=a.profile,
    )
    wanted = [Stage.Kind.FETCH, Stage.Kind.COMPRESS, Stage.Kind.BENCHMARK]
    isolated = run_worker_until(job, wanted, var, env, a.timeout)

    stages = list(job.stages.filter(kind__in=wanted).select_related("recipe").order_by("id"))
    rows = []
    for stage in stages:
        if stage.kind != Stage.Kind.BENCHMARK:
            continue
        for run in BenchmarkRun.objects.filter(stage=stage).order_by("id"):  # the base first, then the variant
            rows.append(row(run, run.metrics.get("speedup") if run.variant_id else None))
    hardware = BenchmarkRun.objects.filter(job=job).values_list("hardware", flat=True).first()
    figures = {
        "model": str(model),
        "recipes": a.recipes.split(","),
        "profile": a.profile,
        "settings": BenchmarkRun.objects.filter(job=job).values_list("settings", flat=True).first(),
        "hardware": hardware,
        "network_namespace": isolated,
        "stages": stage_times(stages),
        "runs": rows,
    }
    print(json.dumps(figures, indent=1))
    print(markdown(rows))
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1))
    variants = [r for r in rows if r.get("speedup") is not None or not r["runnable"]]
    complete = (
        all(s.status == Stage.Status.DONE for s in stages)
        and len(variants) == len(a.recipes.split(","))
        and not any(r["missing"] for r in rows)
        and all(r.get("speedup") for r in variants if r["runnable"])
    )
    finish(var, complete, a.keep)


if __name__ == "__main__":
    main()
