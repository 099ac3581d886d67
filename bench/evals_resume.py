"""Resumable evaluation: what running each kind of request in units from an empty prefix cache
costs an uninterrupted run, and what a run stopped half way and run again scores.

    python bench/evals_resume.py [--model DIR] [--tasks arc_easy,hellaswag] [--limit N] [--out FILE]

Three arms on one plan, one after the other in one process: the evaluation as shipped (units);
the same with one unit per kind (`evals.backend._UNITS = 1`: one prefix cache for the whole
kind, as before units); and a run stopped once its request store holds half of the requests,
then run again from the store. Default model: SmolLM2-135M-Instruct built by tests/smollm2.py;
default data: the fixture copies in tests/fixtures/datasets.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path)
    p.add_argument("--data-dir", type=Path, default=ROOT / "tests" / "fixtures" / "datasets")
    p.add_argument("--tasks", default="arc_easy,hellaswag")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    a = p.parse_args()
    from tests.smollm2 import build

    model = a.model or build()

    import torch

    torch.set_num_threads(a.threads)

    import evals.backend
    from evals import Cancelled, EvalOptions, Suite, TaskSpec, prepare, run
    from evals.store import RequestStore

    suite = Suite(
        "bench", "1", "resume", tuple(TaskSpec(t, 0, limit=a.limit, metric="acc_norm") for t in a.tasks.split(","))
    )
    plan = prepare(model, suite, EvalOptions(data_dir=a.data_dir, device="cpu", bootstrap_iters=0))
    engines = []
    make = evals.backend.EngineLM.__init__

    def keep(self, *args, **kwargs) -> None:  # the engine of each run, for its counters
        make(self, *args, **kwargs)
        engines.append(self.llm)

    evals.backend.EngineLM.__init__ = keep

    def timed(**kwargs) -> tuple:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = run(plan, **kwargs)
        except Cancelled:
            result = None
        stats = engines[-1].stats
        return result, {
            "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
            "tokens_computed": stats.tokens_computed,
            "steps": stats.steps,
        }

    units, units_fig = timed()
    shipped = evals.backend._UNITS
    evals.backend._UNITS = 1
    whole, whole_fig = timed()
    evals.backend._UNITS = shipped
    total = units.requests["scored"]
    with tempfile.TemporaryDirectory() as folder:
        store = RequestStore.open(Path(folder), str(model), plan.settings_key)
        _, stopped_fig = timed(cancelled=lambda: len(store) >= total / 2, store=store)
        kept = len(store)
        resumed, resumed_fig = timed(store=RequestStore.open(Path(folder), str(model), plan.settings_key))

    figures = {
        "model": str(model),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "limit": a.limit,
        "tasks": a.tasks,
        "requests": total,
        "units": units_fig,
        "one_unit": whole_fig,
        "one_unit_same_choices": all(
            x["acc"] == y["acc"] and x["acc_norm"] == y["acc_norm"] for x, y in zip(units.samples, whole.samples)
        ),
        "stopped": {**stopped_fig, "stored": kept},
        "resumed": {**resumed_fig, **resumed.requests},
        "resumed_identical": resumed.samples == units.samples and resumed.metrics == units.metrics,
    }
    print(json.dumps(figures, indent=1))
    if a.out:
        a.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
