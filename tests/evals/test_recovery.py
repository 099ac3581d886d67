"""Recovery and the gate from per-sample scores, against statistics worked out by hand."""

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


def test_it_calls_a_one_point_drop_on_300_samples_noise_and_a_large_one_a_failure():
    base, variant = flips(300, 180, lost=6, gained=3)  # 60.0 -> 59.0
    (noise,) = compare(result(base), result(variant), threshold=0.99)
    assert noise.recovery < 0.99 <= noise.recovery_high
    assert noise.verdict == "within noise" and noise.passed

    base, variant = flips(300, 180, lost=30, gained=3)  # 60.0 -> 51.0
    (drop,) = compare(result(base), result(variant), threshold=0.96)
    assert drop.recovery_high < 0.96
    assert drop.verdict == "fail" and not drop.passed

    (same,) = compare(result(base), result(base), threshold=0.99)
    assert (same.recovery, same.diff_stderr, same.verdict) == (1.0, 0.0, "pass")

    report = gate_report([noise, drop, same], 0.96)
    assert not report["passed"] and report["summary"].startswith("failed") and "t" in report["summary"]
    assert gate_report([noise, same], 0.99)["summary"].startswith("passed: t below 99% but within noise")


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
    assert r.verdict == "fail"  # 95% < 99%, and the per-document changes agree closely


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
