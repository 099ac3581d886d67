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


def test_it_serves_windowed_models_up_to_max_position_embeddings(make_checkpoint):
    path = make_checkpoint("mistral", sliding_window=48)
    assert LLM(path, device="cpu", num_kv_blocks=8).config.max_model_len == 256
    with pytest.raises(ValueError, match="max_position_embeddings"):
        LLM(path, device="cpu", max_model_len=300)


def windows(arch: str, **config) -> list[int | None]:
    return list(
        ModelConfig.from_dict({**TINY_LLAMA, "architectures": [arch], "num_hidden_layers": 6, **config}).layer_windows
    )


def test_it_reads_which_layers_attend_through_a_window():
    w = 32
    assert windows("LlamaForCausalLM", sliding_window=w) == [None] * 6
    assert windows("MistralForCausalLM") == [4096] * 6  # MistralConfig's default
    assert windows("MistralForCausalLM", sliding_window=None) == [None] * 6
    assert windows("Qwen2ForCausalLM", sliding_window=w) == [None] * 6  # unless use_sliding_window
    assert (
        windows("Qwen2ForCausalLM", use_sliding_window=True, sliding_window=w, max_window_layers=4)
        == [None] * 4 + [w] * 2
    )
    qwen2_moe = windows("Qwen2MoeForCausalLM", use_sliding_window=True, sliding_window=w, max_window_layers=4)
    assert qwen2_moe == [w, None, w, None, None, None]
    assert windows("Qwen3MoeForCausalLM", use_sliding_window=True, sliding_window=w) == [w] * 6
    assert windows("Phi3ForCausalLM", sliding_window=w) == [w] * 6
    assert windows("Gemma2ForCausalLM", sliding_window=w) == [w, None] * 3
    assert windows("Gemma3ForCausalLM", sliding_window=w) == [w] * 5 + [None]
    assert windows("Gemma3ForCausalLM", sliding_window=w, sliding_window_pattern=3) == [w, w, None] * 2
    # transformers >= 5 writes layer_types, which win
    types = ["full_attention", "sliding_attention"] * 3
    assert windows("Gemma3ForCausalLM", sliding_window=w, layer_types=types) == [None, w] * 3


def test_it_reads_gemma3_ropes_from_older_configs_the_same_way():
    gemma3 = {**TINY_LLAMA, "architectures": ["Gemma3ForCausalLM"]}
    old = ModelConfig.from_dict(
        {
            **gemma3,
            "rope_theta": 500000.0,
            "rope_local_base_freq": 5000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        }
    )
    new = ModelConfig.from_dict(
        {
            **gemma3,
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 500000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0},
            },
        }
    )
    assert old.rope == new.rope and old.local_rope == new.local_rope
    assert (new.rope.type, new.rope.factor, new.local_rope.type, new.local_rope.theta) == (
        "linear",
        8.0,
        "default",
        5000.0,
    )
    # Gemma3TextConfig's defaults
    plain = ModelConfig.from_dict(gemma3)
    assert (plain.rope.theta, plain.local_rope.theta, plain.head_dim, plain.num_kv_heads) == (1e6, 1e4, 256, 4)
    assert plain.tie_word_embeddings and plain.final_softcap is None and plain.attention_multiplier == 256**-0.5


@pytest.mark.parametrize(
    "config, message",
    [
        ({"architectures": ["Gemma3ForConditionalGeneration"]}, "multimodal Gemma 3.*Gemma3ForCausalLM"),
        ({"use_bidirectional_attention": True}, "bidirectional attention"),
        ({"hidden_activation": "gelu"}, "hidden_activation 'gelu' is not supported"),
        ({"sliding_window": 0}, "sliding_window 0 is not a positive integer"),
        ({"sliding_window": "16"}, "sliding_window '16' is not a positive integer"),
        ({"layer_types": ["sliding_attention"] * 2}, "layer_types .* for each of 1 layers"),
        ({"layer_types": ["chunked_attention"]}, "layer_types .*chunked_attention"),
        ({"sliding_window_pattern": 0}, "sliding_window_pattern 0 is not a positive integer"),
        ({"query_pre_attn_scalar": -1}, "query_pre_attn_scalar -1 is not a positive number"),
        ({"final_logit_softcapping": "30"}, "final_logit_softcapping '30' is not a positive number"),
        ({"rope_parameters": {"full_attention": 5}}, "do not map layer types"),
    ],
)
def test_it_refuses_gemma_configs_it_cannot_run(config, message):
    with pytest.raises(UnsupportedModelError, match=message):
        ModelConfig.from_dict({**TINY_LLAMA, "architectures": ["Gemma3ForCausalLM"], **config})


def test_it_scales_gemma_embeddings_in_the_model_dtype(make_checkpoint):
    """sqrt(72) is 8.49 but 8.5 in bfloat16, which transformers multiplies by."""
    path = make_checkpoint("gemma2", dtype=torch.bfloat16, hidden_size=72)
    llm = LLM(path, device="cpu", dtype="bfloat16", num_kv_blocks=16)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    ids = prompts()[3]
    ours, theirs = [], []
    llm.model.model.layers[0].input_layernorm.register_forward_hook(lambda m, args, out: ours.append(args[0]))
    hf.model.layers[0].input_layernorm.register_forward_hook(lambda m, args, out: theirs.append(args[0]))
    llm.score([(ids[:1], ids[1:])])
    with torch.inference_mode():
        hf(torch.tensor([ids]))
    assert torch.equal(ours[0], theirs[0][0])


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
