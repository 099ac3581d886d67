"""What the engine and compression take, for the hub's checks at submission and their own: the
model architectures the engine loads, the GPUs each compression scheme needs for its fast path,
and the weight groups a model's widths allow."""

# the architectures a job runs end to end; the engine also loads mixture-of-experts models
# (Qwen2-MoE, Qwen3-MoE, Mixtral), which compression does not take yet
SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "GraniteForCausalLM",
    "Phi3ForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
)


def min_compute_capability(scheme: str) -> float | None:
    """The lowest CUDA compute capability on which the engine runs `scheme` (a compression
    scheme summary such as "FP8_DYNAMIC", "2:4+W4A16"); None when any GPU does. FP8 matmuls
    need Ada/Hopper tensor cores, 2:4 sparse ones Ampere's."""
    needs = [8.9 if "FP8" in scheme.upper() else None, 8.0 if "2:4" in scheme else None]
    return max((n for n in needs if n is not None), default=None)


# compressed-tensors stores whole groups only: a preset's group of 128 falls back to these, in
# order, on a model whose Linear input widths it does not divide
FALLBACK_GROUP_SIZES = (64, 32)


def linear_input_widths(config: dict) -> list[int]:
    """The input widths of a Llama-family decoder's Linears, from its config.json: the hidden
    size (q/k/v, gate/up), the attention output (o_proj) and the MLP width (down_proj)."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    return sorted({hidden, heads * head_dim, int(config["intermediate_size"])})


def fitting_group_size(widths: list[int], group_size: int, fall_back: bool) -> int | None:
    """The group size a quantization of these widths uses: `group_size` where it divides every
    width, else (when `fall_back`) the first of FALLBACK_GROUP_SIZES that does; None if none fits."""
    sizes = (group_size, *(g for g in FALLBACK_GROUP_SIZES if g < group_size)) if fall_back else (group_size,)
    return next((g for g in sizes if all(w % g == 0 for w in widths)), None)
