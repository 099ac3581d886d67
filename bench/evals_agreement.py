"""Agreement of our lm-eval backend (the engine) with lm-eval's own `hf` backend (transformers) on
a user's multiple-choice task and on generation with and without the chat template: accuracy of
each, the share of documents where both give the same answer, and the wall time of each.

    python bench/evals_agreement.py [--model DIR] [--configs mc:200,gsm8k:200,gsm8k-chat:200] [--out FILE]

Each config is named with the number of documents it runs (the first N).

Configs, each on the same plan (tasks, documents, shots) for both backends:
- `mc`: a user task YAML in lm-eval's format (ARC-Easy questions from tests/fixtures as local
  JSON lines, zero-shot), run as a user suite file runs;
- `gsm8k`: stock GSM8K, 5-shot, greedy generate_until, no chat template;
- `gsm8k-chat`: the same with the chat template, the shots as turns.
The fixture copy of GSM8K holds only its test split, so the shots come from its last 319 problems,
which are never asked.
Default model: SmolLM2-135M-Instruct built by tests/smollm2.py.
"""

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from bench.evals_backend import both_backends  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SHOTS_FROM = 1000  # GSM8K fixture problems from here on are the shots' pool

MC_TASK = """\
task: arc_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: arc_mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def write_inputs(folder: Path, limits: dict[str, int]) -> tuple[Path, Path]:
    """The user suite of config `mc` and the data directory of the GSM8K configs."""
    from tests.suite_files import arc_rows

    limit = limits.get("mc", 1)
    rows = arc_rows(FIXTURES, limit)
    (folder / "arc_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "arc_mc.yaml").write_text(MC_TASK)
    suite = folder / "suite.yaml"
    suite.write_text(f"suite: arc-mc\ntasks:\n  - {{file: arc_mc.yaml, metric: acc, limit: {limit}}}\n")
    data = folder / "data" / "gsm8k"
    data.mkdir(parents=True)
    lines = (FIXTURES / "datasets" / "gsm8k" / "test.jsonl").read_text().splitlines(keepends=True)
    (data / "test.jsonl").write_text("".join(lines[:SHOTS_FROM]))
    (data / "train.jsonl").write_text("".join(lines[SHOTS_FROM:]))
    return suite, data.parent


def suites(suite_file: Path, limits: dict[str, int]) -> dict:
    from evals import Suite, TaskSpec, get_suite

    def gsm8k(config: str, chat: bool) -> Suite:
        spec = TaskSpec(
            "gsm8k", 5, limit=limits.get(config, 1), metric="exact_match", filter="strict-match", chat_template=chat
        )
        return Suite(config, "1", "5-shot", (spec,))

    return {"mc": get_suite(str(suite_file)), "gsm8k": gsm8k("gsm8k", False), "gsm8k-chat": gsm8k("gsm8k-chat", True)}


def answers(result, task: str) -> dict:
    """Per document, the answer it gave: the picked choice, or the generated text and the number
    the strict filter takes from it."""
    out = {}
    for s in result.samples:
        if s["task"] != task:
            continue
        if "acc" in s:  # multiple choice: the choice with the highest log-likelihood
            scores = [float(r[0]) for r in s["filtered_resps"]]
            out[s["doc_id"]] = {"pick": scores.index(max(scores)), "correct": s["acc"], "correct_norm": s["acc_norm"]}
        elif s["filter"] == "strict-match":
            out[s["doc_id"]] = {"text": s["resps"][0][0], "answer": s["filtered_resps"][0], "correct": s["exact_match"]}
    return out


def compare(config: str, ours, theirs, task: str) -> dict:
    a, b = answers(ours, task), answers(theirs, task)
    assert a.keys() == b.keys(), "the backends scored different documents"
    n = len(a)
    row = {
        "documents": n,
        "accuracy_ours": round(100 * sum(x["correct"] for x in a.values()) / n, 2),
        "accuracy_hf": round(100 * sum(x["correct"] for x in b.values()) / n, 2),
    }
    if config == "mc":
        row["same_pick"] = round(sum(a[d]["pick"] == b[d]["pick"] for d in a) / n, 4)
        row["acc_norm_ours"] = round(100 * sum(x["correct_norm"] for x in a.values()) / n, 2)
        row["acc_norm_hf"] = round(100 * sum(x["correct_norm"] for x in b.values()) / n, 2)
    else:
        row["same_answer"] = round(sum(a[d]["answer"] == b[d]["answer"] for d in a) / n, 4)
        row["same_text"] = round(sum(a[d]["text"] == b[d]["text"] for d in a) / n, 4)
        row["differing_docs"] = sorted(d for d in a if a[d]["answer"] != b[d]["answer"])
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path)
    p.add_argument("--configs", default="mc:200,gsm8k:200,gsm8k-chat:200", help="CONFIG:DOCUMENTS, comma-separated")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--hf-batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    a = p.parse_args()
    limits = {name: int(n) for name, n in (c.split(":") for c in a.configs.split(","))}
    from tests.smollm2 import build

    model = a.model or build()

    import lm_eval
    import torch

    from evals import EvalOptions, prepare

    torch.set_num_threads(a.threads)
    figures = {
        "date": date.today().isoformat(),
        "machine": torch.backends.cpu.get_cpu_capability(),
        "command": " ".join(["python", *sys.argv]),
        "model": str(model),
        "dtype": a.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lm_eval": lm_eval.__version__,
        "hf_batch_size": a.hf_batch_size,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "configs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        suite_file, data_dir = write_inputs(Path(tmp), limits)
        defined = suites(suite_file, limits)
        for config in limits:
            suite = defined[config]
            options = EvalOptions(data_dir=data_dir, dtype=a.dtype, device="cpu", bootstrap_iters=0)
            plan = prepare(model, suite, options)
            ours, theirs, (ours_s, ours_cpu, hf_s, hf_cpu) = both_backends(plan, model, a.dtype, a.hf_batch_size)
            task = suite.tasks[0].name
            row = compare(config, ours, theirs, task)
            row.update(
                ours_s=round(ours_s, 1),
                hf_s=round(hf_s, 1),
                ours_cpu_s=round(ours_cpu, 1),
                hf_cpu_s=round(hf_cpu, 1),
                load_average=[round(x, 2) for x in os.getloadavg()],
            )
            figures["configs"][config] = row
            print(config, json.dumps(row), flush=True)
    print(json.dumps(figures, indent=1))
    if a.out:
        a.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
