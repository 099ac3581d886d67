"""Requests sharing a context compute its full KV blocks once."""

import pytest

from engine import LLM, SamplingParams
from tests.engine.helpers import STORY


@pytest.fixture(scope="module")
def context_and_continuations(stories260k):
    llm = LLM(stories260k, dtype="float32", device="cpu")
    ids = llm.tokenizer(STORY).input_ids
    context = ids[:150]
    continuations = [ids[150:153], ids[150:157], llm.tokenizer(" The cat sat").input_ids[1:], ids[160:162]]
    return context, continuations


def test_it_computes_a_shared_context_once_when_scoring_four_continuations(stories260k, context_and_continuations):
    context, continuations = context_and_continuations
    requests = [(context, c) for c in continuations]
    cached = LLM(stories260k, dtype="float32", device="cpu", block_size=16)
    results = cached.score(requests)

    full_blocks = (len(context) - 1) // 16  # the context's last token is always recomputed
    reused = full_blocks * 16
    total = sum(len(context) + len(c) for c in continuations)
    assert cached.stats.prefix_cache_hit_tokens == 3 * reused
    assert cached.stats.tokens_computed == total - 3 * reused
    # the same numbers without the cache
    plain = LLM(stories260k, dtype="float32", device="cpu", enable_prefix_caching=False)
    expected = plain.score(requests)
    assert plain.stats.tokens_computed == total
    assert [r.logprob for r in results] == pytest.approx([r.logprob for r in expected], abs=1e-5)


def test_it_reuses_a_context_computed_by_an_earlier_call(stories260k, context_and_continuations):
    context, continuations = context_and_continuations
    llm = LLM(stories260k, dtype="float32", device="cpu")
    first = llm.score([(context, continuations[0])])
    computed = llm.stats.tokens_computed
    again = llm.score([(context, continuations[0])])
    assert llm.stats.tokens_computed - computed == len(context) + len(continuations[0]) - (len(context) - 1) // 16 * 16
    assert again[0].logprob == pytest.approx(first[0].logprob, abs=1e-5)


def test_it_shares_prompt_prefixes_between_generations(stories260k, context_and_continuations):
    context, _ = context_and_continuations
    llm = LLM(stories260k, dtype="float32", device="cpu")
    params = SamplingParams(max_tokens=4, temperature=0)
    outputs = llm.generate([context + [100 + i] for i in range(4)], params)
    assert [o.num_cached_tokens for o in outputs] == [0, 144, 144, 144]
