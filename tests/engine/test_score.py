"""`LLM.score` gives transformers' log-likelihoods, and greedy-ness, of continuations."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import LLM
from tests.engine.helpers import STORY, hf_continuation_logprobs, hf_greedy


def score_requests(tokenizer) -> list[tuple[list[int], list[int]]]:
    ids = tokenizer(STORY).input_ids
    requests = []
    for i in range(12):
        cut = 3 + (i * 13) % 100
        requests.append((ids[:cut], ids[cut : cut + 1 + i % 7]))
    # a continuation the model would not pick, and a one-token context
    requests.append((ids[:20], tokenizer(" zebra quantum").input_ids[-2:]))
    requests.append((ids[:1], ids[1:6]))
    return requests


def compare(model_dir, **engine_args) -> LLM:
    llm = LLM(model_dir, dtype="float32", device="cpu", **engine_args)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    requests = score_requests(llm.tokenizer)
    # the model's own greedy continuation, which a random model hardly ever meets in the story
    context = requests[5][0]
    requests.append((context, hf_greedy(hf, [context], 4)[0]))
    results = llm.score(requests)
    greedy_seen = set()
    for (context, continuation), result in zip(requests, results):
        expected = hf_continuation_logprobs(hf, context, continuation)
        assert len(result.token_logprobs) == len(continuation)
        assert result.token_logprobs == pytest.approx(expected, abs=1e-4)
        assert result.logprob == pytest.approx(sum(expected), abs=1e-4)
        with torch.inference_mode():
            logits = hf(torch.tensor([context + continuation])).logits[0]
        argmax = logits[len(context) - 1 : -1].argmax(-1).tolist()
        assert result.is_greedy == (argmax == continuation)
        greedy_seen.add(result.is_greedy)
    assert greedy_seen == {True, False}, "the requests were meant to include greedy and non-greedy continuations"
    assert llm.kv.num_free_blocks == llm.num_kv_blocks
    return llm


def test_it_scores_like_transformers_on_stories260k(stories260k):
    compare(stories260k)


def test_it_scores_like_transformers_when_prompts_are_chunked(stories260k):
    # scored tokens fall on both sides of chunk boundaries
    llm = compare(stories260k, num_kv_blocks=12, max_num_batched_tokens=24, enable_prefix_caching=False)
    assert max(len(c) + len(x) for c, x in score_requests(llm.tokenizer)) > 3 * 24


@pytest.mark.parametrize("arch", ["qwen3_moe", "qwen2_moe", "mixtral"])
def test_it_scores_like_transformers_on_moe_models(make_text_checkpoint, arch):
    compare(make_text_checkpoint(arch))


@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_it_scores_like_transformers_on_gemma_models_through_their_windows(make_text_checkpoint, arch):
    # chunks of 24 tokens over contexts up to ~110, so scored tokens see windows that begin in cached chunks
    llm = compare(make_text_checkpoint(arch), max_num_batched_tokens=24)
    assert max(len(c) for c, _ in score_requests(llm.tokenizer)) > 4 * max(
        w or 0 for w in llm.config.model.layer_windows
    )


def test_it_scores_like_transformers_on_smollm2(smollm2):
    compare(smollm2)


def test_it_gives_the_same_scores_when_logits_are_read_in_small_pieces(stories260k, monkeypatch):
    import engine.runner

    llm = LLM(stories260k, dtype="float32", device="cpu")
    requests = score_requests(llm.tokenizer)
    whole = llm.score(requests)
    monkeypatch.setattr(engine.runner, "_SCORE_ROWS_PER_CHUNK", 5)
    pieces = llm.score(requests)
    assert [r.token_logprobs for r in pieces] == [r.token_logprobs for r in whole]
    assert [r.is_greedy for r in pieces] == [r.is_greedy for r in whole]
