"""Recovery of a variant against its base, with paired statistics on per-sample scores.

Both runs scored the same documents with the same prompts, so the per-sample differences
d_i = variant_i - base_i carry the comparison: their mean is the change of the metric, and their
standard error is far smaller than that of either score alone (most samples agree), which is
what lets a suite tell a real 1-point drop from noise, which lm-eval's
per-task standard errors alone cannot.

Verdicts per task, against the threshold t on recovery = variant / base (base / variant for a
lower-is-better metric such as perplexity), from the 95% interval of the recovery:
- "validated": its lower end clears t (recovery_low >= t);
- "failed": its upper end is below t (recovery_high < t);
- "inconclusive" at this sample size: the interval straddles t. The paired standard error
  shrinks as 1/sqrt(n), so about n * (half-width / |recovery - t|)^2 documents would settle it;
  a recovery at t (or one so close that it would take more than MAX_DOCUMENTS) cannot be
  settled by more documents, and an estimate beyond the documents the task has is said so.
A variant is "failed" if any task failed, else "inconclusive" if any task is, else "validated".
"""

import math
from dataclasses import asdict, dataclass

from evals.run import EvalResult

Z95 = 1.959963984540054

VALIDATED, INCONCLUSIVE, FAILED = "validated", "inconclusive", "failed"
# an estimate beyond this is no plan: no benchmark of this kind has that many documents
MAX_DOCUMENTS = 1_000_000


class SettingsMismatch(ValueError):
    """The two runs may not be compared: different settings, or different documents."""


@dataclass
class TaskRecovery:
    task: str
    metric: str
    n: int
    higher_is_better: bool
    base_value: float
    variant_value: float
    recovery: float
    diff: float  # variant - base, in the metric's units
    diff_stderr: float  # paired standard error of the difference
    ci_low: float  # 95% interval of the difference
    ci_high: float
    recovery_low: float  # 95% interval of the recovery
    recovery_high: float
    threshold: float
    verdict: str  # VALIDATED, INCONCLUSIVE or FAILED
    documents_needed: int | None  # inconclusive only: about how many documents would settle it
    documents_available: int | None  # how many the task has (None: not reported)
    note: str  # inconclusive only: what more documents would do, in words


def settings_diff(a: dict, b: dict) -> list[str]:
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def compare(base: EvalResult, variant: EvalResult, threshold: float) -> list[TaskRecovery]:
    if base.settings_key != variant.settings_key:
        diff = settings_diff(base.settings, variant.settings) or ["settings_key differs"]
        raise SettingsMismatch("the runs were made with different settings: " + "; ".join(diff))
    if not base.metrics:
        raise SettingsMismatch("the base run has no task results: there is nothing to judge the variant on")
    out = []
    for task, m in base.metrics.items():
        vm = variant.metrics.get(task)
        if vm is None:
            raise SettingsMismatch(f"the variant run has no result for {task}")
        metric, flt = m["metric"].split(",", 1)
        b = _per_sample(base.samples, m["tasks"], metric, flt)
        v = _per_sample(variant.samples, m["tasks"], metric, flt)
        if b.keys() != v.keys():
            raise SettingsMismatch(f"{task}: the runs scored different documents ({len(b)} vs {len(v)})")
        changed = [k for k in b if b[k][0] != v[k][0]]
        if changed:
            raise SettingsMismatch(f"{task}: {len(changed)} documents had different prompts, e.g. {changed[0][1]}")
        pairs = [(b[k][1], v[k][1]) for k in sorted(b)]
        available = _available(base.results, m["tasks"])
        out.append(
            _task_recovery(
                task, m["metric"], m["higher_is_better"], pairs, m["value"], vm["value"], threshold, available
            )
        )
    return out


def _available(results: dict, leaves: list[str]) -> int | None:
    """The documents the task has, all its leaves together, as lm-eval counted them before a limit."""
    counts = results.get("n-samples") or {}
    try:
        return sum(int(counts[leaf]["original"]) for leaf in leaves)
    except (KeyError, TypeError, ValueError):
        return None


def _per_sample(samples: list[dict], leaves: list[str], metric: str, flt: str) -> dict:
    wanted = set(leaves)
    out = {}
    for s in samples:
        if s["task"] in wanted and s.get("filter", "none") == flt and metric in s:
            out[(s["task"], s["doc_id"])] = (s.get("prompt_hash"), s[metric])
    return out


def _task_recovery(task, metric, higher, pairs, base_value, variant_value, threshold, available) -> TaskRecovery:
    n = len(pairs)
    if n == 0:
        raise SettingsMismatch(f"{task}: no per-sample scores for {metric}")
    if isinstance(pairs[0][0], (list, tuple)):
        se, low, high, rec, rec_low, rec_high = _perplexity(pairs, base_value)
    else:
        diff, se = _paired_mean([(float(b), float(v)) for b, v in pairs])
        low, high = diff - Z95 * se, diff + Z95 * se
        rec = _ratio(base_value, variant_value, higher)
        # the recovery moves monotonically with the variant's value, so its interval maps over
        ends = sorted(_ratio(base_value, base_value + d, higher) for d in (low, high))
        rec_low, rec_high = ends
    judged = verdict(rec_low, rec_high, threshold)
    needed, note = _unsettled(n, rec, rec_low, rec_high, threshold, available) if judged == INCONCLUSIVE else (None, "")
    return TaskRecovery(
        task=task,
        metric=metric,
        n=n,
        higher_is_better=higher,
        base_value=base_value,
        variant_value=variant_value,
        recovery=rec,
        diff=variant_value - base_value,
        diff_stderr=se,
        ci_low=low,
        ci_high=high,
        recovery_low=rec_low,
        recovery_high=rec_high,
        threshold=threshold,
        verdict=judged,
        documents_needed=needed,
        documents_available=available,
        note=note,
    )


def verdict(recovery_low: float, recovery_high: float, threshold: float) -> str:
    """The one rule: a task is judged by where the 95% interval of its recovery lies."""
    if recovery_low >= threshold:
        return VALIDATED
    if recovery_high < threshold:
        return FAILED
    return INCONCLUSIVE


def overall(verdicts: list[str]) -> str:
    if FAILED in verdicts:
        return FAILED
    return INCONCLUSIVE if INCONCLUSIVE in verdicts else VALIDATED


def documents_needed(n: int, recovery: float, low: float, high: float, threshold: float) -> int | None:
    """About how many documents would make the interval clear the threshold one way or the other:
    the half-width is Z95 * se and se scales as 1/sqrt(n), so n' = n * (half-width / gap)^2.
    None when more documents cannot settle it (the recovery sits on the threshold)."""
    gap = abs(recovery - threshold)
    if gap == 0:
        return None
    needed = math.ceil(n * ((high - low) / 2 / gap) ** 2)
    # a perplexity's interval is not symmetric, so the estimate may land at n itself
    return max(needed, n + 1) if needed <= MAX_DOCUMENTS else None


def _unsettled(n: int, recovery: float, low: float, high: float, threshold: float, available: int | None):
    """An inconclusive task's documents needed, and what they would do, in words."""
    needed = documents_needed(n, recovery, low, high, threshold)
    if needed is None:
        return None, (
            f"more documents of this size cannot settle it: the recovery, {recovery:.2%}, is too close to the "
            f"threshold (settling it would take over {MAX_DOCUMENTS:,} documents)"
        )
    if available is not None and needed > available:
        return needed, f"about {needed:,} documents would settle it, more than the {available:,} the task has"
    of = f" of the task's {available:,}" if available is not None else ""
    return needed, f"about {needed:,} documents would settle it ({n:,} scored{of})"


def _paired_mean(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    d = [v - b for b, v in pairs]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    return mean, math.sqrt(var / n)


def _ratio(base: float, variant: float, higher: bool) -> float:
    # a base of 0 (or a variant perplexity of 0) leaves nothing to lose
    if higher:
        return variant / base if base > 0 else 1.0
    return base / variant if variant > 0 else 1.0


def _perplexity(pairs, base_ppl: float):
    """Weighted perplexity exp(-sum ll / sum w) per document pair ((ll_b, w), (ll_v, w)): the
    change of the mean log-likelihood per unit (word, byte) D = sum(ll_v - ll_b) / W is a ratio
    estimator over documents; perplexity scales by exp(-D), so recovery = base/variant = exp(D)."""
    w = [float(b[1]) for b, _ in pairs]
    d = [float(v[0]) - float(b[0]) for b, v in pairs]
    total = sum(w)
    D = sum(d) / total
    n = len(d)
    se_d = math.sqrt(n / (n - 1) * sum((di - wi * D) ** 2 for di, wi in zip(d, w))) / total if n > 1 else 0.0
    ppl = lambda shift: base_ppl * math.exp(-shift)  # noqa: E731 - the variant's perplexity for a given D
    low, high = sorted((ppl(D + Z95 * se_d) - base_ppl, ppl(D - Z95 * se_d) - base_ppl))
    return base_ppl * se_d, low, high, math.exp(D), math.exp(D - Z95 * se_d), math.exp(D + Z95 * se_d)


def gate_report(recoveries: list[TaskRecovery], threshold: float) -> dict:
    at = _percent(threshold)
    failed = [r.task for r in recoveries if r.verdict == FAILED]
    unsettled = [r for r in recoveries if r.verdict == INCONCLUSIVE]
    if failed:
        summary = f"failed: the 95% interval of the recovery lies below {at} on {', '.join(failed)}"
    elif unsettled:
        summary = f"inconclusive at this sample size: the 95% interval of the recovery straddles {at} on " + "; ".join(
            f"{r.task}: {r.note}" for r in unsettled
        )
    else:
        summary = f"validated: the 95% interval of every task's recovery lies at or above {at}"
    return {
        "verdict": overall([r.verdict for r in recoveries]),
        "threshold": threshold,
        "summary": summary,
        "tasks": {r.task: asdict(r) for r in recoveries},
    }


def _percent(x: float) -> str:
    return f"{x * 100:.10g}%"  # 99%, 97.5%: a threshold as it was set, without rounding it away
