"""The engine on CUDA: decode steps replay CUDA graphs, give what eager steps and transformers
give, and sync with the host once per step."""

import gc
import random
import warnings

import pytest
import torch

from engine import LLM, SamplingParams
from tests.engine.helpers import hf_continuation_logprobs

pytestmark = pytest.mark.gpu


def random_prompts(n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 128) for _ in range(rng.randint(1, 90))] for _ in range(n)]


def hf_greedy_cuda(model_dir, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p], device="cuda")
            gen = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
            )
            out.append(gen[0, len(p) :].tolist())
    return out


def engine(model_dir, **kwargs) -> LLM:
    kwargs = {"dtype": "float32", "device": "cuda", "max_num_seqs": 40, "num_kv_blocks": 256, **kwargs}
    return LLM(model_dir, **kwargs)


@pytest.fixture(autouse=True)
def release_cuda_memory():
    yield
    gc.collect()
    torch.cuda.empty_cache()


def test_it_generates_what_transformers_generates_with_graphs_and_preemption(make_checkpoint):
    model_dir = make_checkpoint("llama")
    prompts = random_prompts(32)
    llm = engine(model_dir, num_kv_blocks=48, max_num_batched_tokens=96)
    assert llm.runner.graph_batch_sizes == [1, 2, 4, 8, 16, 32, 40]
    outputs = llm.generate(prompts, SamplingParams(max_tokens=24, temperature=0))
    expected = hf_greedy_cuda(model_dir, prompts, 24)
    for i, (out, ref) in enumerate(zip(outputs, expected)):
        assert out.token_ids == ref, f"prompt {i} ({len(prompts[i])} tokens) differs"
    assert llm.stats.preemptions > 0, "the block pool was meant to force preemption"
    assert llm.runner.num_graph_replays > 0
    assert llm.kv.num_free_blocks == 48


def test_it_samples_the_same_with_and_without_graphs(make_checkpoint):
    model_dir = make_checkpoint("qwen3")  # q/k norms, another head_dim
    prompts = random_prompts(24, seed=1)
    params = [
        SamplingParams(max_tokens=16, temperature=0, logprobs=2)
        if i % 2
        else SamplingParams(max_tokens=16, temperature=0.9, top_p=0.95, seed=i, logprobs=2)
        for i in range(len(prompts))
    ]
    results = []
    for enforce_eager in (False, True):
        llm = engine(model_dir, enforce_eager=enforce_eager)
        results.append(llm.generate(prompts, params))
        assert (llm.runner.num_graph_replays > 0) != enforce_eager
        del llm
    for graphed, eager in zip(*results):
        assert graphed.token_ids == eager.token_ids
        for a, b in zip(graphed.logprobs, eager.logprobs):
            assert a.keys() == b.keys()
            assert all(abs(a[t] - b[t]) < 1e-4 for t in a)


def test_it_scores_like_transformers_on_cuda(make_checkpoint):
    from transformers import AutoModelForCausalLM

    model_dir = make_checkpoint("llama")
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    context = random_prompts(1, seed=2)[0] * 2
    continuations = [[5, 6, 7], [9], [40, 41, 42, 43, 44]]
    results = engine(model_dir).score([(context, c) for c in continuations])
    for result, c in zip(results, continuations):
        expected = hf_continuation_logprobs(hf, context, c)
        assert result.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_it_syncs_with_the_host_once_per_step(make_checkpoint):
    llm = engine(make_checkpoint("llama"))
    llm.generate(random_prompts(4), SamplingParams(max_tokens=4, temperature=0))  # warm up
    steps = llm.stats.steps
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            llm.generate(random_prompts(20, seed=3), SamplingParams(max_tokens=12, temperature=0))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    # reading each step's sampled tokens is the one sync
    assert len(syncs) == llm.stats.steps - steps, [str(w.message) for w in syncs[:3]]
    assert llm.runner.num_graph_replays > 0


def test_it_sizes_the_kv_cache_from_free_memory(make_checkpoint):
    # 32 KiB of K/V per token, so the block pool of a whole GPU stays a few 100k blocks
    model_dir = make_checkpoint(
        "llama",
        hidden_size=1024,
        intermediate_size=2048,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
    )
    free, total = torch.cuda.mem_get_info()
    llm = LLM(model_dir, dtype="float32", device="cuda")
    cache_bytes = llm.runner.kv_cache.numel() * llm.runner.kv_cache.element_size()
    assert cache_bytes > 0.5 * free
    assert torch.cuda.mem_get_info()[0] > 0.05 * total  # headroom kept for activations
    outputs = llm.generate(random_prompts(8), SamplingParams(max_tokens=8, temperature=0))
    assert all(len(o.token_ids) for o in outputs)
