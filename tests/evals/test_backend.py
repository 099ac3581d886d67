"""Our lm-eval backend against lm-eval's own `hf` backend (real transformers) on stories260k."""

import json

import pytest
from lm_eval.api.instance import Instance

from engine import LLM
from evals.backend import EngineLM, _waves


def requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


@pytest.fixture(scope="module")
def arc_pairs(data_dir) -> list[tuple[str, str]]:
    """Multiple-choice requests as lm-eval's ARC task makes them, plus an empty context."""
    rows = [json.loads(line) for line in (data_dir / "arc_easy" / "test.jsonl").read_text().splitlines()[:6]]
    pairs = [
        (f"Question: {r['question']['stem']}\nAnswer:", f" {c['text']}") for r in rows for c in r["question"]["choices"]
    ]
    return [*pairs, ("", "Once upon a time there was a cat.")]


@pytest.fixture(scope="module")
def hf(stories260k):
    from lm_eval.models.huggingface import HFLM

    # max_length 511: the same rolling windows as ours (the engine scores within max_model_len)
    return HFLM(pretrained=str(stories260k), device="cpu", dtype="float32", batch_size=8, max_length=511)


@pytest.fixture(scope="module")
def ours(stories260k):
    return EngineLM(stories260k, dtype="float32", device="cpu")


def test_it_scores_choices_as_the_hf_backend_does(hf, ours, arc_pairs):
    theirs = hf.loglikelihood(requests("loglikelihood", arc_pairs))
    mine = ours.loglikelihood(requests("loglikelihood", arc_pairs))
    assert len(mine) == len(arc_pairs)
    for (lp_t, greedy_t), (lp_m, greedy_m) in zip(theirs, mine):
        assert lp_m == pytest.approx(lp_t, abs=2e-3)
        assert greedy_m == greedy_t
    # the four choices of a question share its context in the KV cache
    assert ours.llm.stats.prefix_cache_hit_tokens > 0


def test_it_gives_the_same_scores_with_and_without_prefix_sharing(stories260k, ours, arc_pairs):
    plain = EngineLM(llm=LLM(stories260k, dtype="float32", device="cpu", enable_prefix_caching=False))
    a = ours.loglikelihood(requests("loglikelihood", arc_pairs))
    b = plain.loglikelihood(requests("loglikelihood", arc_pairs))
    assert [g for _, g in a] == [g for _, g in b]
    assert [lp for lp, _ in a] == pytest.approx([lp for lp, _ in b], abs=1e-4)


def test_it_scores_long_documents_in_rolling_windows_as_the_hf_backend_does(hf, ours, data_dir):
    text = (data_dir / "wikitext2_raw" / "test.txt").read_text()
    docs = [(text[:3000],), (text[5000:5400],)]  # ~1.5k tokens (three windows) and one window
    theirs = hf.loglikelihood_rolling(requests("loglikelihood_rolling", docs))
    mine = ours.loglikelihood_rolling(requests("loglikelihood_rolling", docs))
    assert mine == pytest.approx(theirs, rel=1e-4)


def test_it_generates_greedily_until_a_stop_string_as_the_hf_backend_does(hf, ours):
    args = [
        ("Once upon a time", {"until": ["."], "max_gen_toks": 40, "do_sample": False}),
        ("Lily and Ben went to the park", {"until": ["\n"], "max_gen_toks": 12, "do_sample": False}),
    ]
    theirs = hf.generate_until(requests("generate_until", args))
    mine = ours.generate_until(requests("generate_until", args))
    assert mine == theirs
    assert mine[0] and "." not in mine[0]


def test_it_reports_progress_and_stops_when_cancelled(stories260k, arc_pairs):
    from engine import Cancelled

    seen = []
    lm = EngineLM(stories260k, dtype="float32", device="cpu", progress=lambda d, m: seen.append((d, m)))
    lm.loglikelihood(requests("loglikelihood", arc_pairs))
    assert seen[0] == (0.0, f"loglikelihood: 0/{len(arc_pairs)} requests")
    assert seen[-1] == (1.0, f"loglikelihood: {len(arc_pairs)}/{len(arc_pairs)} requests")
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    lm.cancelled = lambda: True
    with pytest.raises(Cancelled):
        lm.loglikelihood(requests("loglikelihood", arc_pairs))


def test_it_orders_shared_prefixes_into_waves():
    prefix = tuple(range(100, 140))  # a few-shot prefix of 40 tokens (two full blocks)
    pairs = []
    for q in range(3):
        question = tuple(range(200 + 10 * q, 210 + 10 * q))
        pairs += [(prefix + question, (answer,)) for answer in (1, 2, 3, 4)]
    pairs.append(((7, 8), (9,)))  # shares nothing
    waves = _waves(sorted(pairs, key=lambda p: p[0] + p[1]), block_size=16)
    # first: one request of the first question (and the loner); then the first question's other
    # answers and one request of each other question, reusing the few-shot prefix; then the
    # other answers, reusing prefix + question
    assert [len(w) for w in waves] == [2, 5, 6]
    assert ((7, 8), (9,)) in waves[0]
    first_answers = {(p[0][40:], p[1]) for p in waves[1] if p[1] == (1,)}
    assert first_answers == {(tuple(range(210, 220)), (1,)), (tuple(range(220, 230)), (1,))}
    assert all(p[1] != (1,) for p in waves[2])
