"""The public `LLM` API: text in and out, streaming, stop conditions, progress and cancel."""

import pytest

from engine import LLM, Cancelled, SamplingParams

GREEDY = SamplingParams(max_tokens=40, temperature=0)
PROMPTS = ["Once upon a time", "The little dog was", "Lily and Tom went to the"]


@pytest.fixture(scope="module")
def llm(stories260k):
    return LLM(stories260k, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def reference(llm):
    return llm.generate(PROMPTS, GREEDY)


def test_it_takes_text_prompts_and_returns_text(llm, reference):
    out = reference[0]
    assert out.prompt_token_ids == llm.tokenizer(PROMPTS[0]).input_ids
    ids = out.token_ids[:-1] if out.finish_reason == "stop" else out.token_ids
    assert out.text == llm.tokenizer.decode(ids, skip_special_tokens=True)
    assert out.text.strip()
    by_ids = llm.generate([out.prompt_token_ids], GREEDY)[0]
    assert by_ids.token_ids == out.token_ids


def test_it_stamps_every_token_with_a_time(reference):
    for out in reference:
        assert len(out.token_times) == len(out.token_ids)
        assert out.arrival_time <= out.first_token_time == out.token_times[0]
        assert out.token_times == sorted(out.token_times)


def test_it_streams_the_same_tokens_as_it_generates(llm, reference):
    events = list(llm.stream(PROMPTS, GREEDY))
    for i, out in enumerate(reference):
        mine = [e for e in events if e.index == i]
        assert [e.token_id for e in mine] == out.token_ids
        assert "".join(e.text for e in mine) == out.text
        assert [e.finished for e in mine] == [False] * (len(mine) - 1) + [True]
        assert mine[-1].finish_reason == out.finish_reason
    times = [e.time for e in events]
    assert times == sorted(times)
    # requests run together: the first tokens of all three come from the same step
    assert {e.index for e in events[:3]} == {0, 1, 2}
    assert len({e.time for e in events[:3]}) == 1


def test_it_stops_at_a_stop_string_and_leaves_it_out(llm, reference):
    text = reference[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 4]
    out = llm.generate(PROMPTS[:1], SamplingParams(max_tokens=40, temperature=0, stop=[stop]))[0]
    assert out.finish_reason == "stop"
    assert out.text == text[: text.index(stop)]
    assert len(out.token_ids) < len(reference[0].token_ids)


def test_it_never_streams_any_part_of_a_stop_string(llm, reference):
    text = reference[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 6]
    params = SamplingParams(max_tokens=40, temperature=0, stop=[stop])
    streamed = "".join(e.text for e in llm.stream(PROMPTS[:1], params))
    assert streamed == text[: text.index(stop)]


def test_it_stops_at_a_stop_token_and_keeps_it_in_the_ids(llm, reference):
    ids = reference[1].token_ids
    stop_at = next(i for i in range(2, len(ids)) if ids[i] not in ids[:i])
    out = llm.generate(PROMPTS[1:2], SamplingParams(max_tokens=40, temperature=0, stop_token_ids=[ids[stop_at]]))[0]
    assert out.token_ids == ids[: stop_at + 1] and out.finish_reason == "stop"
    assert out.text == llm.tokenizer.decode(ids[:stop_at], skip_special_tokens=True)


def test_it_stops_at_max_tokens_and_at_max_model_len(llm, stories260k):
    out = llm.generate(PROMPTS[:1], SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))[0]
    assert len(out.token_ids) == 3 and out.finish_reason == "length"
    short = LLM(stories260k, dtype="float32", device="cpu", max_model_len=12)
    out = short.generate([[1, 2, 3, 4, 5]], SamplingParams(max_tokens=100, temperature=0, ignore_eos=True))[0]
    assert len(out.token_ids) == 7 and out.finish_reason == "length"
    with pytest.raises(ValueError, match="max_model_len"):
        short.generate([list(range(1, 13))], GREEDY)
    # scoring only reads, so a whole max_model_len window fits
    assert len(short.score([(list(range(1, 8)), list(range(8, 13)))])[0].token_logprobs) == 5
    with pytest.raises(ValueError, match="max_model_len"):
        short.score([(list(range(1, 8)), list(range(8, 14)))])


def test_it_reports_progress_and_honours_cancel(llm):
    seen = []
    llm.generate(PROMPTS, GREEDY, progress=lambda done, msg: seen.append((done, msg)))
    assert seen[-1] == (1.0, "3/3 requests done")
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    calls = iter(range(100))
    with pytest.raises(Cancelled):
        llm.generate(PROMPTS, GREEDY, cancelled=lambda: next(calls) >= 3)
    # the engine is clean afterwards: nothing queued, every block back
    assert not llm.scheduler.has_unfinished()
    assert llm.kv.num_free_blocks == llm.num_kv_blocks
    assert len(llm.generate(PROMPTS[:1], GREEDY)[0].token_ids) > 0


def test_it_counts_what_it_computes(stories260k):
    llm = LLM(stories260k, dtype="float32", device="cpu", enable_prefix_caching=False)
    outs = llm.generate(PROMPTS, SamplingParams(max_tokens=5, temperature=0, ignore_eos=True))
    prompt_tokens = sum(len(o.prompt_token_ids) for o in outs)
    s = llm.stats
    assert s.prefill_tokens == prompt_tokens
    assert s.decode_tokens == 3 * 4  # the 5th token of each is sampled but never computed
    assert s.tokens_computed == s.prefill_tokens + s.decode_tokens
    assert s.steps == 5 and s.preemptions == 0 and s.prefix_cache_hit_tokens == 0


def test_it_reports_weight_bytes_and_kv_capacity(stories260k):
    llm = LLM(stories260k, dtype="float32", device="cpu", num_kv_blocks=10, block_size=8)
    assert llm.kv_capacity_tokens == 80
    assert llm.weights_bytes == sum(p.numel() * 4 for p in llm.model.parameters())
    by_memory = LLM(stories260k, dtype="float32", device="cpu", kv_cache_memory=1 << 20)
    per_token = 2 * 5 * 4 * 8 * 4  # K and V, 5 layers, 4 KV heads, head_dim 8, fp32
    assert by_memory.kv_capacity_tokens == (1 << 20) // (per_token * 16) * 16
