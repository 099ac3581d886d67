"""Sampling on known logits, and seeded reproducibility through the engine."""

import math

import pytest
import torch

from engine import LLM, SamplingParams
from engine.layers.sampler import Sampler, apply_top_k_top_p

PROBS = [0.5, 0.2, 0.15, 0.1, 0.05]
N = 40_000


def sample_counts(params: SamplingParams, probs: list[float] = PROBS, n: int = N) -> list[float]:
    logits = torch.tensor(probs).log().repeat(n, 1)
    sampler = Sampler(torch.Generator().manual_seed(1))
    tokens = sampler(logits, [params] * n, [None] * n)
    return (torch.bincount(tokens, minlength=len(probs)).float() / n).tolist()


def assert_distribution(freqs: list[float], expected: list[float]) -> None:
    for f, p in zip(freqs, expected):
        sigma = math.sqrt(p * (1 - p) / N)
        assert abs(f - p) <= 5 * sigma + 1e-9, (freqs, expected)


def test_it_samples_the_plain_distribution_at_temperature_one():
    assert_distribution(sample_counts(SamplingParams(temperature=1.0)), PROBS)


def test_it_sharpens_the_distribution_at_low_temperature():
    squared = [p**2 for p in PROBS]
    assert_distribution(sample_counts(SamplingParams(temperature=0.5)), [p / sum(squared) for p in squared])


def test_it_keeps_only_the_top_k_tokens():
    kept = PROBS[:2]
    expected = [p / sum(kept) for p in kept] + [0.0] * 3
    assert_distribution(sample_counts(SamplingParams(top_k=2)), expected)


def test_it_keeps_the_smallest_nucleus_reaching_top_p():
    # 0.5 + 0.2 < 0.8 <= 0.5 + 0.2 + 0.15: the first three tokens
    kept = PROBS[:3]
    expected = [p / sum(kept) for p in kept] + [0.0] * 2
    assert_distribution(sample_counts(SamplingParams(top_p=0.8)), expected)


def test_it_applies_top_k_then_top_p_per_row():
    logits = torch.tensor(PROBS).log().repeat(3, 1)
    out = apply_top_k_top_p(logits, torch.tensor([0, 3, 1]), torch.tensor([0.6, 1.0, 1.0]))
    kept = torch.isfinite(out).tolist()
    assert kept == [
        [True, True, False, False, False],  # top_p 0.6: 0.5 is not enough, 0.5 + 0.2 is
        [True, True, True, False, False],  # top_k 3
        [True, False, False, False, False],  # top_k 1
    ]
    assert torch.equal(out[0, :2], logits[0, :2])


def test_it_picks_the_argmax_at_temperature_zero_even_beside_sampled_rows():
    logits = torch.tensor([PROBS, PROBS[::-1]]).log()
    sampler = Sampler(torch.Generator().manual_seed(0))
    for _ in range(20):
        tokens = sampler(logits, [SamplingParams(temperature=0), SamplingParams(temperature=0)], [None, None])
        assert tokens.tolist() == [0, 4]
        mixed = sampler(logits, [SamplingParams(temperature=1.0), SamplingParams(temperature=0)], [None, None])
        assert mixed[1].item() == 4


@pytest.fixture(scope="module")
def llm(stories260k):
    return LLM(stories260k, dtype="float32", device="cpu")


def test_it_reproduces_a_seeded_request_whatever_runs_beside_it(llm):
    seeded = SamplingParams(max_tokens=24, temperature=1.0, top_p=0.95, seed=1234)
    alone = llm.generate(["Once upon a time"], seeded)[0].token_ids
    others = SamplingParams(max_tokens=24, temperature=0.8)
    crowd = llm.generate(["The cat", "Once upon a time", "A big dog ran"], [others, seeded, others])
    assert crowd[1].token_ids == alone
    other_seed = llm.generate(["Once upon a time"], SamplingParams(max_tokens=24, seed=99))[0].token_ids
    assert other_seed != alone


def test_it_reports_log_probs_of_sampled_tokens_and_top_alternatives(llm):
    out = llm.generate(["Once upon a time"], SamplingParams(max_tokens=8, temperature=0, logprobs=3))[0]
    assert len(out.logprobs) == len(out.token_ids) == 8
    for token, entry in zip(out.token_ids, out.logprobs):
        assert token in entry and len(entry) == 3  # greedy: the sampled token is the top one
        assert entry[token] == max(entry.values()) <= 0
    assert llm.generate(["Once upon a time"], SamplingParams(max_tokens=2))[0].logprobs is None
