"""Greedy generation equals transformers' token for token, under preemption and chunking."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import LLM, SamplingParams
from tests.engine.helpers import hf_greedy, mixed_prompts


def run_and_compare(model_dir, max_tokens: int, num_kv_blocks: int, budget: int) -> LLM:
    llm = LLM(model_dir, dtype="float32", device="cpu", num_kv_blocks=num_kv_blocks, max_num_batched_tokens=budget)
    prompts = mixed_prompts(llm.tokenizer, 32)
    assert len({len(p) for p in prompts}) >= 16
    outputs = llm.generate(prompts, SamplingParams(max_tokens=max_tokens, temperature=0))

    # eager: the attention transformers soft-caps (Gemma 2) and windows exactly
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    expected = hf_greedy(hf, prompts, max_tokens)
    for i, (out, ref) in enumerate(zip(outputs, expected)):
        assert out.token_ids == ref, f"prompt {i} ({len(prompts[i])} tokens) differs"
        assert out.finish_reason == ("stop" if len(ref) < max_tokens else "length")
    assert llm.stats.preemptions > 0, "the block pool was meant to force preemption"
    # nothing leaks: every block is back in the pool with no reference left
    assert llm.kv.num_free_blocks == num_kv_blocks
    assert all(b.ref_cnt == 0 for b in llm.kv.pool.blocks)
    return llm


def test_it_generates_exactly_what_transformers_generates_on_stories260k(stories260k):
    llm = run_and_compare(stories260k, max_tokens=48, num_kv_blocks=48, budget=96)
    assert llm.stats.prefix_cache_hit_tokens > 0


@pytest.mark.parametrize("arch", ["qwen3_moe", "qwen2_moe", "mixtral"])
def test_it_generates_exactly_what_transformers_generates_on_moe_models(make_text_checkpoint, arch):
    budget = 48  # below the longest prompts, whose prefill is chunked
    llm = run_and_compare(make_text_checkpoint(arch), max_tokens=12, num_kv_blocks=32, budget=budget)
    assert max(len(p) for p in mixed_prompts(llm.tokenizer, 32)) > 2 * budget


@pytest.mark.parametrize(
    "arch, overrides",
    [
        ("gemma2", {}),
        ("gemma3", {}),
        # windows that used to cap max_model_len, now shorter than most prompts
        ("mistral", {"sliding_window": 16}),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1}),
    ],
)
def test_it_generates_exactly_what_transformers_generates_through_sliding_windows(
    make_text_checkpoint, arch, overrides
):
    budget = 48  # below the longest prompts, whose prefill is chunked
    llm = run_and_compare(make_text_checkpoint(arch, **overrides), max_tokens=12, num_kv_blocks=32, budget=budget)
    windows = llm.config.model.layer_windows
    assert any(windows) and llm.config.max_model_len > max(w or 0 for w in windows)
    prompts = mixed_prompts(llm.tokenizer, 32)
    assert sum(len(p) > max(w or 0 for w in windows) for p in prompts) >= 24
    assert max(len(p) for p in prompts) > 2 * budget


@pytest.mark.slow
def test_it_generates_exactly_what_transformers_generates_on_smollm2(smollm2):
    run_and_compare(smollm2, max_tokens=16, num_kv_blocks=40, budget=256)
