"""A whole job through a real worker with no network: import a base, compress it with each
recipe, evaluate base and variants on a suite from local task data, and report the stages'
times and the per-task recovery with its 95% interval.

    python bench/evals_job.py [--model DIR] [--recipes w8a8-int8,w4a16] [--suite quick]

The hub runs on SQLite and the file broker in a fresh temporary folder; the worker runs inside
`unshare -n` (a network namespace with nothing in it) with HF_HUB_OFFLINE=1, so every byte it
reads is local. Default model: SmolLM2-135M-Instruct built by tests/smollm2.py.
"""

import argparse
import json
import sys
from pathlib import Path

# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.offline_job import FIXTURES, finish, run_worker_until, smollm2, stage_times, start_hub  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path)
    p.add_argument("--recipes", default="w8a8-int8,w4a16")
    p.add_argument("--suite", default="quick")
    p.add_argument("--data-dir", type=Path, default=FIXTURES / "datasets")
    p.add_argument("--calibration", default=str(FIXTURES / "datasets" / "wikitext2_raw" / "test.txt"))
    p.add_argument("--calibration-samples", type=int, default=64)
    p.add_argument("--calibration-seq-len", type=int, default=256)
    p.add_argument("--threads", type=int, help="torch threads in the worker (default: torch's)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--keep", action="store_true", help="keep the temporary hub folder")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    a = p.parse_args()
    model = a.model or smollm2()
    settings = {
        "HUB_EVAL_DATA_DIR": str(a.data_dir),
        "HUB_CALIBRATION_DATASET": a.calibration,
        "HUB_CALIBRATION_SAMPLES": str(a.calibration_samples),
        "HUB_CALIBRATION_SEQ_LEN": str(a.calibration_seq_len),
        "HF_DATASETS_OFFLINE": "1",
    }
    if a.threads:
        settings["OMP_NUM_THREADS"] = str(a.threads)
    var, env = start_hub("evals-job-", settings)
    from django.core.management import call_command

    from hub.catalog.models import BaseModel
    from hub.jobs.models import Job, Recipe, Stage
    from hub.results.models import EvalRun, Recovery

    call_command("import_model", str(model), name="bench/base")
    job = Job.submit(
        base_model=BaseModel.objects.get(name="bench/base"),
        recipes=[Recipe.for_preset(r) for r in a.recipes.split(",")],
        suite=a.suite,
        benchmark_profile="",
    )
    wanted = [Stage.Kind.BASELINE, Stage.Kind.COMPRESS, Stage.Kind.VALIDATE]
    isolated = run_worker_until(job, wanted, var, env, a.timeout)

    stages = list(job.stages.filter(kind__in=wanted).select_related("recipe").order_by("id"))
    figures = {
        "model": str(model),
        "recipes": a.recipes.split(","),
        "suite": a.suite,
        "network_namespace": isolated,
        "stages": stage_times(stages),
        "runs": {},
        "recovery": {},
    }
    evaluations = [s for s in stages if s.kind in (Stage.Kind.BASELINE, Stage.Kind.VALIDATE)]
    figures["evaluation_seconds"] = round(sum(figures["stages"][s.name]["seconds"] or 0 for s in evaluations), 1)
    for run in EvalRun.objects.filter(job=job).order_by("id"):
        figures["runs"][str(run.model)] = {
            "seconds": round(run.duration_s, 1),
            "dtype": run.settings["dtype"],
            **{t: round(m["value"], 4) for t, m in run.metrics.items()},
        }
        for r in Recovery.objects.filter(variant_run=run):
            figures["recovery"].setdefault(str(run.model), {})[r.task] = {
                "metric": r.metric,
                "base": round(r.base_value, 4),
                "variant": round(r.variant_value, 4),
                "recovery": round(r.recovery, 4),
                "diff": round(r.diff, 4),
                "diff_stderr": round(r.diff_stderr, 4),
                "ci": [round(r.ci_low, 4), round(r.ci_high, 4)],
                "recovery_ci": [round(r.recovery_low, 4), round(r.recovery_high, 4)],
                "verdict": r.verdict,
                "documents_needed": r.documents_needed,
                "threshold": r.threshold,
            }
    figures["gates"] = {v.name: v.gate_report.get("summary") for v in job.variants.all()}
    print(json.dumps(figures, indent=1))
    if a.out:
        a.out.write_text(json.dumps(figures, indent=1))
    finish(var, all(s.status == Stage.Status.DONE for s in evaluations), a.keep)


if __name__ == "__main__":
    main()
