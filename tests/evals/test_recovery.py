"""Recovery and the gate from per-sample scores, against statistics worked out by hand."""

import dataclasses
import math
import statistics

import pytest

from evals import EvalResult, SettingsMismatch, compare, gate_report


def result(
    scores: list,
    metric: str = "acc",
    higher: bool = True,
    value: float | None = None,
    settings: dict | None = None,
    prompt: str = "p",
) -> EvalResult:
    """A run of one task whose samples carry `scores` (floats, or (loglikelihood, words) pairs)."""
    if value is None:
        value = sum(scores) / len(scores)
    samples = [
        {"task": "t", "doc_id": i, "filter": "none", "prompt_hash": f"{prompt}{i}", metric: s}
        for i, s in enumerate(scores)
    ]
    settings = settings or {"suite": "s", "suite_version": "1"}
    return EvalResult(
        model="m",
        suite="s",
        suite_version="1",
        engine_version="e",
        settings=settings,
        settings_key=str(sorted(settings.items())),
        metrics={
            "t": {
                "metric": f"{metric},none",
                "value": value,
                "stderr": None,
                "n": len(scores),
                "higher_is_better": higher,
                "tasks": ["t"],
            }
        },
        results={},
        samples=samples,
    )


def flips(n: int, correct: int, lost: int, gained: int) -> tuple[list[int], list[int]]:
    """Base scores with `correct` of `n` right; the variant loses `lost` of them and gains `gained`."""
    base = [1] * correct + [0] * (n - correct)
    variant = list(base)
    for i in range(lost):
        variant[i] = 0
    for i in range(gained):
        variant[correct + i] = 1
    return base, variant


def test_it_computes_the_paired_difference_and_its_interval():
    base, variant = flips(300, 180, lost=6, gained=3)
    (r,) = compare(result(base), result(variant), threshold=0.99)
    d = [v - b for b, v in zip(base, variant)]
    se = statistics.stdev(d) / math.sqrt(len(d))
    assert r.n == 300
    assert r.diff == pytest.approx(-3 / 300)
    assert r.diff_stderr == pytest.approx(se)
    assert (r.ci_low, r.ci_high) == pytest.approx((-0.01 - 1.959964 * se, -0.01 + 1.959964 * se))
    assert r.recovery == pytest.approx(177 / 180)
    assert (r.recovery_low, r.recovery_high) == pytest.approx(((0.6 + r.ci_low) / 0.6, (0.6 + r.ci_high) / 0.6))


def test_it_validates_only_a_task_whose_whole_interval_clears_the_threshold():
    base, variant = flips(300, 180, lost=1, gained=1)  # 60.0 -> 60.0, two documents changed
    (clear,) = compare(result(base), result(variant), threshold=0.96)
    assert clear.recovery_low >= 0.96
    assert (clear.verdict, clear.documents_needed, clear.note) == ("validated", None, "")

    base, variant = flips(300, 180, lost=30, gained=3)  # 60.0 -> 51.0
    (drop,) = compare(result(base), result(variant), threshold=0.96)
    assert drop.recovery_high < 0.96
    assert (drop.verdict, drop.documents_needed, drop.note) == ("failed", None, "")

    (same,) = compare(result(base), result(base), threshold=0.99)
    assert (same.recovery, same.diff_stderr, same.verdict) == (1.0, 0.0, "validated")


def test_it_calls_a_drop_too_few_documents_can_judge_inconclusive_and_says_how_many_would_settle_it():
    # the quick suite's HellaSwag: 100 documents, 30.0 -> 28.0, a recovery of 93.3% against 99%
    base, variant = flips(100, 30, lost=4, gained=2)
    counted = {"n-samples": {"t": {"original": 10042, "effective": 100}}}
    a, b = result(base), result(variant)
    a.results = counted
    (r,) = compare(a, b, threshold=0.99)
    assert r.recovery == pytest.approx(28 / 30) and r.recovery_low < 0.99 <= r.recovery_high
    assert r.verdict == "inconclusive" and r.documents_available == 10042
    # by hand: the recovery's standard error is the paired one over the base's 0.30
    d = [v - b for b, v in zip(base, variant)]
    se = statistics.stdev(d) / math.sqrt(100) / 0.30
    assert r.documents_needed == math.ceil(100 * (1.959964 * se / (0.99 - 28 / 30)) ** 2)
    assert r.note == f"about {r.documents_needed:,} documents would settle it (100 scored of the task's 10,042)"

    # as many documents like these do settle it: the interval then lies below the threshold
    copies = math.ceil(r.documents_needed / 100)
    (settled,) = compare(result(base * copies), result(variant * copies), threshold=0.99)
    assert settled.verdict == "failed" and settled.n >= r.documents_needed

    # a task that has fewer documents than that says so
    a.results = {"n-samples": {"t": {"original": 300, "effective": 100}}}
    (r,) = compare(a, b, threshold=0.99)
    assert r.note == f"about {r.documents_needed:,} documents would settle it, more than the 300 the task has"

    # a recovery exactly at the threshold cannot be settled by any number of documents
    (at,) = compare(a, b, threshold=r.recovery)
    assert at.verdict == "inconclusive" and at.documents_needed is None
    assert at.note.startswith("more documents of this size cannot settle it: the recovery, 93.33%, is too close")


def test_it_judges_the_variant_by_its_worst_verdict():
    base, variant = flips(300, 180, lost=1, gained=1)
    (good,) = compare(result(base), result(variant), threshold=0.96)
    base, variant = flips(300, 180, lost=30, gained=3)
    (bad,) = compare(result(base), result(variant), threshold=0.96)
    base, variant = flips(100, 30, lost=4, gained=2)
    (unsure,) = compare(result(base), result(variant), threshold=0.96)
    good, bad, unsure = (
        dataclasses.replace(r, task=name) for r, name in ((good, "arc"), (bad, "lambada"), (unsure, "hs"))
    )
    assert unsure.verdict == "inconclusive"

    report = gate_report([good, unsure, bad], 0.96)
    assert report["verdict"] == "failed"
    assert report["summary"] == "failed: the 95% interval of the recovery lies below 96% on lambada"
    assert report["tasks"]["hs"]["verdict"] == "inconclusive" and report["tasks"]["hs"]["documents_needed"] > 100

    report = gate_report([good, unsure], 0.96)
    assert report["verdict"] == "inconclusive"
    assert report["summary"] == (
        f"inconclusive at this sample size: the 95% interval of the recovery straddles 96% on hs: {unsure.note}"
    )
    report = gate_report([good], 0.975)
    assert report["verdict"] == "validated"
    assert report["summary"] == "validated: the 95% interval of every task's recovery lies at or above 97.5%"


def test_it_inverts_recovery_for_perplexity():
    # per document (loglikelihood, words); the variant loses 0.05 nats per word on every document
    words = [120, 80, 200, 100]
    base = [(-3.0 * w, w) for w in words]
    variant = [(-3.05 * w + (1 if i % 2 else -1), w) for i, w in enumerate(words)]
    ppl = lambda docs: math.exp(-sum(ll for ll, _ in docs) / sum(w for _, w in docs))  # noqa: E731
    (r,) = compare(
        result(base, "word_perplexity", False, ppl(base)), result(variant, "word_perplexity", False, ppl(variant)), 0.99
    )
    assert r.recovery == pytest.approx(ppl(base) / ppl(variant))
    assert r.recovery == pytest.approx(math.exp(-0.05))
    assert r.recovery_low < r.recovery < r.recovery_high
    assert r.diff == pytest.approx(ppl(variant) - ppl(base)) and r.diff > 0
    assert r.verdict == "failed"  # 95% < 99%, and the per-document changes agree closely


def test_it_compares_only_runs_with_identical_settings_and_prompts():
    base = result([1, 0, 1])
    with pytest.raises(SettingsMismatch, match="different settings: dtype: 'float32' vs 'bfloat16'"):
        compare(
            result([1, 0, 1], settings={"dtype": "float32"}), result([1, 1, 1], settings={"dtype": "bfloat16"}), 0.99
        )
    with pytest.raises(SettingsMismatch, match="3 documents had different prompts"):
        compare(base, result([1, 0, 1], prompt="q"), 0.99)
    with pytest.raises(SettingsMismatch, match="scored different documents"):
        compare(base, result([1, 0]), 0.99)
    empty = result([1, 0, 1])
    empty.metrics = {}
    with pytest.raises(SettingsMismatch, match="nothing to judge the variant on"):
        compare(empty, base, 0.99)
