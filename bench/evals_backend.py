"""Our lm-eval backend (the engine) against lm-eval's own `hf` backend (transformers), on the same
tasks and documents in one process: accuracy of each, per-document agreement, and time.

    python bench/evals_backend.py [--model DIR] [--tasks arc_easy,hellaswag] [--limit N]

Default model: SmolLM2-135M-Instruct built by tests/smollm2.py; default data: the
fixture copies in tests/fixtures/datasets (whole sets unless --limit).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def both_backends(plan, model: Path, dtype: str, hf_batch_size: int):
    """Our engine's run of `plan`, then lm-eval's `hf` backend's on the same plan, and the wall and
    CPU seconds of each (ours_s, ours_cpu, hf_s, hf_cpu), model loading included: on a machine
    shared with other jobs the wall time moves with their load, the CPU time much less."""
    from lm_eval.models.huggingface import HFLM

    from evals import run

    started, cpu = time.perf_counter(), time.process_time()
    ours = run(plan)
    ours_s, ours_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    hf = HFLM(pretrained=str(model), device="cpu", dtype=dtype, batch_size=hf_batch_size)
    theirs = run(plan, lm=hf)
    hf_s, hf_cpu = time.perf_counter() - started, time.process_time() - cpu
    return ours, theirs, (ours_s, ours_cpu, hf_s, hf_cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path)
    p.add_argument("--data-dir", type=Path, default=ROOT / "tests" / "fixtures" / "datasets")
    p.add_argument("--tasks", default="arc_easy,hellaswag")
    p.add_argument("--limit", type=int)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--hf-batch-size", type=int, default=16)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both (on a shared machine one avoids stalls on descheduled threads)",
    )
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    a = p.parse_args()
    from tests.smollm2 import build

    model = a.model or build()

    import torch

    torch.set_num_threads(a.threads)

    from evals import EvalOptions, Suite, TaskSpec, prepare

    suite = Suite(
        "bench",
        "1",
        "backend comparison",
        tuple(TaskSpec(t, 0, limit=a.limit, metric="acc_norm") for t in a.tasks.split(",")),
    )
    plan = prepare(model, suite, EvalOptions(data_dir=a.data_dir, dtype=a.dtype, device="cpu", bootstrap_iters=0))

    ours, theirs, (ours_s, ours_cpu, hf_s, hf_cpu) = both_backends(plan, model, a.dtype, a.hf_batch_size)

    figures = {
        "model": str(model),
        "dtype": a.dtype,
        "threads": torch.get_num_threads(),
        "limit": a.limit,
        "ours_s": round(ours_s, 1),
        "hf_s": round(hf_s, 1),
        "speedup": round(hf_s / ours_s, 2),
        "ours_cpu_s": round(ours_cpu, 1),
        "hf_cpu_s": round(hf_cpu, 1),
        "cpu_speedup": round(hf_cpu / ours_cpu, 2),
        "tasks": {},
    }
    for task in ours.metrics:
        row = {"n": ours.metrics[task]["n"]}
        for metric in ("acc", "acc_norm"):
            mine = ours.results["results"][task][f"{metric},none"]
            other = theirs.results["results"][task][f"{metric},none"]
            row[metric] = {
                "ours": round(100 * mine, 2),
                "hf": round(100 * other, 2),
                "diff_points": round(100 * (mine - other), 2),
            }
        a_s = {s["doc_id"]: s for s in ours.samples if s["task"] == task}
        b_s = {s["doc_id"]: s for s in theirs.samples if s["task"] == task}
        row["same_choice"] = round(
            sum(a_s[d]["acc_norm"] == b_s[d]["acc_norm"] and a_s[d]["acc"] == b_s[d]["acc"] for d in a_s) / len(a_s), 4
        )
        figures["tasks"][task] = row
    print(json.dumps(figures, indent=1))
    if a.out:
        a.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
