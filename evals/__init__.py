"""Validation library: lm-eval on the built-in engine, versioned task suites that also run from
local data, and recovery statistics between a base and a variant run with identical settings.

    from evals import EvalOptions, evaluate, compare
    base = evaluate("path/to/base", "quick", EvalOptions(data_dir=Path("datasets")))
    variant = evaluate("path/to/variant", "quick", EvalOptions(data_dir=Path("datasets")))
    report = compare(base, variant, threshold=0.96)
"""

from evals.recovery import SettingsMismatch, TaskRecovery, compare, gate_report
from evals.run import Cancelled, EvalOptions, EvalResult, Plan, evaluate, prepare, run
from evals.suites import SUITES, Suite, SuiteError, TaskSpec, get_suite, load_suite

__all__ = [
    "SUITES",
    "Cancelled",
    "EvalOptions",
    "EvalResult",
    "Plan",
    "SettingsMismatch",
    "Suite",
    "SuiteError",
    "TaskRecovery",
    "TaskSpec",
    "compare",
    "evaluate",
    "gate_report",
    "get_suite",
    "load_suite",
    "prepare",
    "run",
]
