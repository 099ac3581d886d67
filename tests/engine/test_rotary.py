"""Rotary frequencies equal transformers' for the rope types the engine implements."""

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from engine.config import ModelConfig
from engine.layers.rotary import cos_sin_cache, inverse_frequencies

LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}


@pytest.mark.parametrize(
    "scaling",
    [
        None,
        LLAMA_31_8B["rope_scaling"],
        {"rope_type": "linear", "factor": 4.0},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
        {
            "rope_type": "yarn",
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "mscale": 1.0,
            "mscale_all_dim": 0.707,
            "beta_fast": 16,
            "truncate": False,
        },
    ],
    ids=["default", "llama3", "linear", "yarn", "yarn-mscale"],
)
def test_it_computes_the_inverse_frequencies_transformers_computes(scaling):
    raw = {**LLAMA_31_8B, "rope_scaling": scaling}
    ours = ModelConfig.from_dict(raw)
    hf_config = LlamaConfig(
        **{k: v for k, v in raw.items() if k not in ("architectures", "rope_scaling", "rope_theta")},
        rope_parameters={"rope_theta": raw["rope_theta"], **(scaling or {"rope_type": "default"})},
    )
    init = ROPE_INIT_FUNCTIONS.get(ours.rope.type, LlamaRotaryEmbedding.compute_default_rope_parameters)
    expected, attention_factor = init(hf_config, device="cpu")
    assert ours.rope.attention_factor == pytest.approx(attention_factor, rel=1e-12)
    assert torch.equal(inverse_frequencies(ours.rope, ours.head_dim), expected)


def test_it_lays_out_cos_then_sin_per_position():
    rope = ModelConfig.from_dict(LLAMA_31_8B).rope
    cache = cos_sin_cache(rope, 128, 10)
    angles = torch.arange(10).float()[:, None] * inverse_frequencies(rope, 128)[None, :]
    assert cache.shape == (10, 128) and cache.dtype == torch.float32
    assert torch.equal(cache[:, :64], angles.cos()) and torch.equal(cache[:, 64:], angles.sin())
