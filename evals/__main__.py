"""python -m evals run MODEL_DIR --suite quick [--data-dir DIR] [--out results.json]
python -m evals compare BASE.json VARIANT.json [--threshold 0.96]
python -m evals suites"""

import argparse
import json
import os
import sys
from pathlib import Path

from common.work import progress_bar
from evals import SUITES, EvalOptions, EvalResult, SettingsMismatch, SuiteError, compare, evaluate, gate_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="evaluate a checkpoint on a suite")
    r.add_argument("model_dir", type=Path)
    r.add_argument("--suite", default="quick", help=f"built-in ({', '.join(SUITES)}) or a suite YAML file")
    r.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("HUB_EVAL_DATA_DIR") or None,
        help="local task data (<dir>/<task>/<split>.jsonl); default: $HUB_EVAL_DATA_DIR, else the HF hub",
    )
    r.add_argument("--out", type=Path, help="results JSON (per-sample logs go beside it)")
    r.add_argument("--dtype", default="auto")
    r.add_argument("--device", default="auto")
    r.add_argument("--add-bos-token", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument(
        "--chat-template", action="store_true", help="apply the tokenizer's chat template to every task of the suite"
    )
    r.add_argument("--max-model-len", type=int)

    c = sub.add_parser("compare", help="recovery of a variant run against its base run")
    c.add_argument("base", type=Path)
    c.add_argument("variant", type=Path)
    c.add_argument("--threshold", type=float, help="recovery the gate needs (default: the suite's, else 0.96)")
    c.add_argument("--json", action="store_true", help="also print the gate report as JSON")

    sub.add_parser("suites", help="list the built-in suites")
    a = p.parse_args(argv)

    if a.command == "suites":
        for s in SUITES.values():
            tasks = ", ".join(
                f"{t.name} ({t.num_fewshot}-shot{f', {t.limit} docs' if t.limit else ''}"
                f"{', chat template' if t.chat_template else ''})"
                for t in s.tasks
            )
            print(f"{s.name} v{s.version}: {s.description}\n  {tasks}")
        return 0

    if a.command == "run":
        return _run(a)
    return _compare(a)


def _run(a: argparse.Namespace) -> int:
    options = EvalOptions(
        data_dir=a.data_dir,
        dtype=a.dtype,
        device=a.device,
        add_bos_token=a.add_bos_token,
        chat_template=a.chat_template,
        max_model_len=a.max_model_len,
    )
    try:
        with progress_bar() as progress:
            result = evaluate(a.model_dir, a.suite, options, progress=progress)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for task, m in result.metrics.items():
        stderr = f" ± {m['stderr']:.4f}" if m["stderr"] is not None else ""
        print(f"{task:20} {m['metric']:28} {m['value']:.4f}{stderr}  (n={m['n']})")
    print(f"{result.duration_s:.1f} s, settings {result.settings_key[:12]}")
    if a.out:
        result.save(a.out)
        print(f"wrote {a.out}")
    return 0


def _compare(a: argparse.Namespace) -> int:
    base, variant = EvalResult.load(a.base), EvalResult.load(a.variant)
    threshold = a.threshold or (SUITES[base.suite].recovery_threshold if base.suite in SUITES else None) or 0.96
    try:
        recoveries = compare(base, variant, threshold)
    except SettingsMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'task':20} {'metric':24} {'base':>8} {'variant':>8} {'recovery':>9}  95% interval      verdict")
    for r in recoveries:
        print(
            f"{r.task:20} {r.metric:24} {r.base_value:8.4f} {r.variant_value:8.4f} {r.recovery:9.2%}  "
            f"[{r.recovery_low:.2%}, {r.recovery_high:.2%}]  {r.verdict}"
        )
    report = gate_report(recoveries, threshold)
    print(report["summary"])
    if a.json:
        print(json.dumps(report, indent=1))
    return 1 if report["verdict"] == "failed" else 0  # as publish: only a failed variant is refused


if __name__ == "__main__":
    sys.exit(main())
