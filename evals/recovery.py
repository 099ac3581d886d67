"""Recovery of a variant against its base, with paired statistics on per-sample scores.

Both runs scored the same documents with the same prompts, so the per-sample differences
d_i = variant_i - base_i carry the comparison: their mean is the change of the metric, and their
standard error is far smaller than that of either score alone (most samples agree), which is
what lets a suite tell a real 1-point drop from noise, which lm-eval's
per-task standard errors alone cannot.

Verdicts per task, against the threshold t on recovery = variant / base (base / variant for a
lower-is-better metric such as perplexity):
- "pass": recovery >= t;
- "within noise": recovery < t, but the upper end of its 95% interval reaches t (the drop
  beyond the threshold is not significant);
- "fail": even the upper end of the 95% interval is below t.
The gate passes when no task fails.
"""

import math
from dataclasses import asdict, dataclass

from evals.run import EvalResult

Z95 = 1.959963984540054


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
    verdict: str

    @property
    def passed(self) -> bool:
        return self.verdict != "fail"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def settings_diff(a: dict, b: dict) -> list[str]:
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def compare(base: EvalResult, variant: EvalResult, threshold: float) -> list[TaskRecovery]:
    if base.settings_key != variant.settings_key:
        diff = settings_diff(base.settings, variant.settings) or ["settings_key differs"]
        raise SettingsMismatch("the runs were made with different settings: " + "; ".join(diff))
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
        out.append(_task_recovery(task, m["metric"], m["higher_is_better"], pairs, m["value"], vm["value"], threshold))
    return out


def _per_sample(samples: list[dict], leaves: list[str], metric: str, flt: str) -> dict:
    wanted = set(leaves)
    out = {}
    for s in samples:
        if s["task"] in wanted and s.get("filter", "none") == flt and metric in s:
            out[(s["task"], s["doc_id"])] = (s.get("prompt_hash"), s[metric])
    return out


def _task_recovery(task, metric, higher, pairs, base_value, variant_value, threshold) -> TaskRecovery:
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
    if rec >= threshold:
        verdict = "pass"
    elif rec_high >= threshold:
        verdict = "within noise"
    else:
        verdict = "fail"
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
        verdict=verdict,
    )


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
    failed = [r.task for r in recoveries if not r.passed]
    noisy = [r.task for r in recoveries if r.verdict == "within noise"]
    if failed:
        summary = f"failed: recovery significantly below {threshold:.0%} on {', '.join(failed)}"
    elif noisy:
        summary = f"passed: {', '.join(noisy)} below {threshold:.0%} but within noise (95% interval reaches it)"
    else:
        summary = f"passed: every task recovers at least {threshold:.0%}"
    return {
        "passed": not failed,
        "threshold": threshold,
        "summary": summary,
        "tasks": {r.task: r.to_dict() for r in recoveries},
    }
