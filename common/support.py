"""What the engine runs, for the hub's checks at submission and the engine's own: the model
architectures it loads, and the GPUs each compression scheme needs for its fast path."""

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def min_compute_capability(scheme: str) -> float | None:
    """The lowest CUDA compute capability on which the engine runs `scheme` (a compression
    scheme summary such as "FP8_DYNAMIC", "2:4+W4A16"); None when any GPU does. FP8 matmuls
    need Ada/Hopper tensor cores, 2:4 sparse ones Ampere's."""
    needs = [8.9 if "FP8" in scheme.upper() else None, 8.0 if "2:4" in scheme else None]
    return max((n for n in needs if n is not None), default=None)
