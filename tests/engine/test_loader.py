"""Checkpoints of each supported family load and run like transformers; others are refused."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import LLM, SamplingParams, UnsupportedModelError, WeightsError
from engine.config import ModelConfig
from tests.engine.helpers import hf_continuation_logprobs, hf_greedy

# the smallest config ModelConfig takes, for the tests of how it reads one
TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "vocab_size": 128,
}
LLAMA31_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 128, (n,), generator=g).tolist() for n in (1, 5, 23, 40, 70)]


def assert_matches_transformers(path, dtype=torch.float32) -> LLM:
    llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ps = prompts()
    outputs = llm.generate(ps, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    hf.generation_config.eos_token_id = None
    assert [o.token_ids for o in outputs] == hf_greedy(hf, ps, 12)
    context, continuation = ps[3], ps[4][:20]
    [result] = llm.score([(context, continuation)])
    assert result.token_logprobs == pytest.approx(hf_continuation_logprobs(hf, context, continuation), abs=1e-4)
    return llm


@pytest.mark.parametrize(
    "arch, overrides",
    [
        ("llama", {"rope_parameters": LLAMA31_ROPE}),  # Llama 3.1: GQA, scaled rope past position 32
        ("llama", {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True}),
        ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}),
        ("llama", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}}),
        # Qwen3's long-context YaRN, its original length short enough that the prompts cross the ramp
        (
            "qwen3",
            {
                "rope_parameters": {
                    "rope_type": "yarn",
                    "factor": 4.0,
                    "rope_theta": 10000.0,
                    "original_max_position_embeddings": 16,
                }
            },
        ),
        ("mistral", {}),
        ("qwen2", {}),  # q/k/v biases
        ("qwen3", {}),  # q/k norms, head_dim != hidden / heads
        # Granite 3's scalings, each far from 1 so that a missed one changes the tokens
        (
            "granite",
            {
                "embedding_multiplier": 12.0,
                "residual_multiplier": 0.22,
                "attention_multiplier": 0.015625,
                "logits_scaling": 8.0,
                "attention_bias": True,
            },
        ),
        ("phi3", {}),  # q/k/v and gate/up fused in the checkpoint
        # experts, a shared expert on every second layer (the others dense), top-k not renormalized
        ("qwen2_moe", {"num_hidden_layers": 4, "decoder_sparse_step": 2}),
    ],
    ids=[
        "llama3.1-rope",
        "llama-tied-biases",
        "llama-linear-rope",
        "llama-dynamic-rope",
        "qwen3-yarn",
        "mistral",
        "qwen2",
        "qwen3",
        "granite",
        "phi3",
        "qwen2-moe-sparse-step",
    ],
)
def test_it_runs_each_family_like_transformers(make_checkpoint, arch, overrides):
    assert_matches_transformers(make_checkpoint(arch, **overrides))


def test_it_loads_a_sharded_checkpoint(make_checkpoint):
    path = make_checkpoint("llama", shard="40KB")
    assert (path / "model.safetensors.index.json").is_file()
    assert len(list(path.glob("*.safetensors"))) > 2
    assert_matches_transformers(path)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_it_runs_half_precision_checkpoints_in_their_dtype_when_asked(make_checkpoint, dtype):
    """On a CPU, "auto" may choose float32 for them (tests/engine/test_compute_dtype.py)."""
    path = make_checkpoint("llama", dtype=dtype)
    llm = LLM(path, device="cpu", dtype=str(dtype).removeprefix("torch."), num_kv_blocks=16)
    assert llm.config.dtype == dtype
    assert all(p.dtype == dtype for p in llm.model.parameters())
    assert llm.runner.kv_cache.dtype == dtype
    assert llm.weights_bytes == sum(p.numel() for p in llm.model.parameters()) * 2
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    context, continuation = prompts()[3], prompts()[4][:10]
    [result] = llm.score([(context, continuation)])
    expected = hf_continuation_logprobs(hf, context, continuation)
    assert result.token_logprobs == pytest.approx(expected, rel=0.05, abs=0.05)  # half-precision rounding
    assert LLM(path, dtype="float32", device="cpu", num_kv_blocks=16).config.dtype == torch.float32


def test_it_reads_rope_scaling_from_older_configs_the_same_way():
    old = ModelConfig.from_dict(
        {
            **TINY_LLAMA,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        }
    )
    new = ModelConfig.from_dict({**TINY_LLAMA, "rope_parameters": LLAMA31_ROPE})
    assert old.rope == new.rope and new.rope.type == "llama3" and new.rope.theta == 500000.0


def test_it_refuses_pickle_weights(make_checkpoint, tmp_path):
    path = make_checkpoint("llama")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="pickle"):
        LLM(tmp_path, device="cpu")


def test_it_refuses_unknown_architectures(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel.*not supported"):
        LLM(tmp_path, device="cpu")


def test_it_refuses_compressed_tensors_checkpoints_for_now(make_checkpoint, tmp_path):
    path = make_checkpoint("llama")
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "compressed-tensors", "format": "pack-quantized"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(UnsupportedModelError, match="compressed-tensors.*not supported yet"):
        LLM(tmp_path, device="cpu")


def test_it_refuses_rope_types_it_does_not_implement():
    with pytest.raises(UnsupportedModelError, match="longrope"):
        ModelConfig.from_dict({**TINY_LLAMA, "rope_parameters": {"rope_type": "longrope", "factor": 4.0}})


def test_it_names_missing_tensors(make_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    path = make_checkpoint("llama")
    tensors = load_file(path / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(WeightsError, match="layers.1.mlp.gate_up_proj"):
        LLM(tmp_path, device="cpu")


def test_it_caps_max_model_len_at_the_sliding_window(make_checkpoint):
    path = make_checkpoint("mistral", sliding_window=48)
    assert LLM(path, device="cpu", num_kv_blocks=8).config.max_model_len == 48
    with pytest.raises(ValueError, match="sliding window"):
        LLM(path, device="cpu", max_model_len=100)


def test_it_loads_every_architecture_the_hub_accepts():
    from common.support import SUPPORTED_ARCHITECTURES
    from engine.config import _ARCHITECTURES

    assert set(SUPPORTED_ARCHITECTURES) <= set(_ARCHITECTURES)


def test_it_reads_which_layers_are_sparse_and_how_they_route():
    qwen3 = {**TINY_LLAMA, "architectures": ["Qwen3MoeForCausalLM"], "num_hidden_layers": 6, "num_experts": 8}
    moe = ModelConfig.from_dict({**qwen3, "decoder_sparse_step": 2, "mlp_only_layers": [3]}).moe
    assert moe.layers == {1, 5} and moe.num_experts == 8 and moe.top_k == 8 and not moe.renormalize
    assert moe.intermediate_size == 768 and moe.shared_expert_size == 0  # transformers' defaults
    mixtral = ModelConfig.from_dict({**qwen3, "architectures": ["MixtralForCausalLM"]}).moe
    assert mixtral.layers == set(range(6)) and mixtral.renormalize and mixtral.top_k == 2
    assert mixtral.intermediate_size == TINY_LLAMA["intermediate_size"]
    assert ModelConfig.from_dict(TINY_LLAMA).moe is None


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"num_experts_per_tok": 9}, "num_experts_per_tok 9 is more than the 8 experts"),
        ({"decoder_sparse_step": 0}, "decoder_sparse_step 0 is not a positive integer"),
        ({"num_experts": "8"}, "num_experts '8' is not a positive integer"),
        ({"mlp_only_layers": "1,2"}, "mlp_only_layers '1,2' is not a list of layer numbers"),
    ],
)
def test_it_refuses_moe_configs_that_make_no_sense(bad, message):
    config = {**TINY_LLAMA, "architectures": ["Qwen2MoeForCausalLM"], "num_experts": 8, **bad}
    with pytest.raises(UnsupportedModelError, match=message):
        ModelConfig.from_dict(config)


def test_it_refuses_quantized_moe_checkpoints_for_now(make_checkpoint, tmp_path):
    path = make_checkpoint("qwen3_moe")
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "group_size": 32}}},
        "ignore": ["lm_head", "re:.*mlp.gate$"],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(UnsupportedModelError, match="MoE experts are not yet supported quantized"):
        LLM(tmp_path, device="cpu")


@pytest.mark.parametrize(
    "edit, error, message",
    [
        # an expert's projection left out
        (lambda t: t.pop("model.layers.2.mlp.experts.5.up_proj.weight"), WeightsError,
         r"lacks 1 tensors.*model\.layers\.2\.mlp\.experts\.up_proj#5"),
        # expert 5 saved as a ninth expert
        (lambda t: t.update({k.replace(".experts.5.", ".experts.8."): t.pop(k) for k in list(t) if ".experts.5." in k}),
         ValueError, "there is no expert 8"),
        # an expert in layer 1, which mlp_only_layers makes dense
        (lambda t: t.update({"model.layers.1.mlp.experts.0.gate_proj.weight": torch.zeros(32, 64)}), WeightsError,
         "'model.layers.1.mlp.experts.0.gate_proj.weight' has no place"),
    ],
    ids=["missing", "past-the-last", "in-a-dense-layer"],
)  # fmt: skip
def test_it_checks_each_expert_tensor(make_checkpoint, tmp_path, edit, error, message):
    from safetensors.torch import load_file, save_file

    path = make_checkpoint("qwen3_moe")
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(error, match=message):
        LLM(tmp_path, device="cpu")
