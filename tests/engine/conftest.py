import json
import shutil
from pathlib import Path

import pytest
import torch

TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=256,
    # larger than the usual 0.02 so random models have clear favourites (no near-ties in argmax)
    initializer_range=0.3,
)
# the mixture-of-experts families: three layers, eight experts of which each token takes two
_MOE = dict(num_hidden_layers=3, num_experts_per_tok=2)
TINY_MOE = {
    # a dense layer between sparse ones, and renormalized top-k weights, as in Qwen3-30B-A3B
    "qwen3_moe": dict(_MOE, num_experts=8, moe_intermediate_size=32, mlp_only_layers=[1], norm_topk_prob=True),
    "qwen2_moe": dict(_MOE, num_experts=8, moe_intermediate_size=32, shared_expert_intermediate_size=48),
    "mixtral": dict(_MOE, num_local_experts=8, intermediate_size=32),
}
# Gemma: windows shorter than most prompts, and a score scale and caps far from the defaults (and
# from what head_dim would give) so that a missed one changes the tokens
_GEMMA = dict(head_dim=16, query_pre_attn_scalar=24)
TINY_GEMMA = {
    # sliding, full, sliding
    "gemma2": dict(
        _GEMMA, num_hidden_layers=3, sliding_window=13, attn_logit_softcapping=4.0, final_logit_softcapping=8.0
    ),
    # five local layers, then a global one; a rope of their own for the local layers, scaled on the global
    "gemma3": dict(
        _GEMMA,
        num_hidden_layers=6,
        sliding_window=16,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
        },
    ),
}


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Runs the engine tests on one intra-op thread. The models here are small, so a second
    thread gains little, and on a shared machine a descheduled OpenMP thread stalls every op
    (measured: the SmolLM2 equality test takes 5x longer with 2 threads under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(arch: str, overrides: dict):
    import transformers

    classes = {
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "granite": transformers.GraniteConfig,
        "phi3": transformers.Phi3Config,
        "qwen2_moe": transformers.Qwen2MoeConfig,
        "qwen3_moe": transformers.Qwen3MoeConfig,
        "mixtral": transformers.MixtralConfig,
        "gemma2": transformers.Gemma2Config,
        "gemma3": transformers.Gemma3TextConfig,
    }
    kwargs = {**TINY, **TINY_MOE.get(arch, {}), **TINY_GEMMA.get(arch, {}), **overrides}
    if arch == "mistral":
        kwargs.setdefault("sliding_window", None)
    if arch in ("qwen3", "qwen3_moe"):
        kwargs.setdefault("head_dim", 32)
    if arch == "phi3":  # its config defaults to token ids past the tiny vocabulary
        kwargs.update(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return classes[arch](**kwargs)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """Writes a random transformers model of the given family to a fresh directory."""
    from transformers import AutoModelForCausalLM

    def make(arch: str = "llama", dtype: torch.dtype = torch.float32, shard: str | None = None, **overrides) -> Path:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(arch, overrides), dtype=dtype)
        out = tmp_path_factory.mktemp(arch)
        model.save_pretrained(out, max_shard_size=shard or "1GB")
        return out

    return make


@pytest.fixture(scope="session")
def make_text_checkpoint(make_checkpoint, stories260k):
    """A random checkpoint of the given family that reads text: stories260k's tokenizer and
    vocabulary, for the tests that share prompts with the stories260k ones."""
    config = json.loads((stories260k / "config.json").read_text())
    ids = {key: config[key] for key in ("vocab_size", "bos_token_id", "eos_token_id")}

    def make(arch: str, **overrides) -> Path:
        path = make_checkpoint(arch, **ids, **overrides)
        for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(stories260k / name, path / name)
        return path

    return make
