"""The compression presets the hub offers. `compress.PRESETS` implements them; a test keeps
the two lists equal. The web side needs this without importing torch."""

from dataclasses import dataclass

from common.support import FALLBACK_GROUP_SIZES, fitting_group_size, linear_input_widths, min_compute_capability


@dataclass(frozen=True)
class Preset:
    scheme: str
    description: str
    # Recovery gate default: 8-bit schemes must keep 99%, 4-bit and 2:4 96% (what users of compressed models commonly ask of them).
    recovery_threshold: float
    group_size: int | None = None  # weights quantized in groups of this many inputs

    def fits(self, config: dict) -> str | None:
        """Why a model of this config.json cannot take the preset (None when it can): the group
        size, or one it falls back to, must divide the input width of every Linear. A config
        without the widths (a model not fetched yet) is checked by compress instead."""
        if self.group_size is None or not {"hidden_size", "intermediate_size", "num_attention_heads"} <= set(config):
            return None
        widths = linear_input_widths(config)
        if fitting_group_size(widths, self.group_size, fall_back=True) is None:
            tried = ", ".join(str(g) for g in (self.group_size, *FALLBACK_GROUP_SIZES))
            return f"no group size it may use ({tried}) divides all its Linear input widths ({', '.join(map(str, widths))})"
        return None

    @property
    def min_compute_capability(self) -> float | None:
        """Lowest CUDA compute capability with a fast path; None when any device runs it."""
        return min_compute_capability(self.scheme)


PRESETS: dict[str, Preset] = {
    "w4a16": Preset("W4A16", "int4 weights (symmetric, group 128), round-to-nearest", 0.96, group_size=128),
    "w4a16-gptq": Preset("W4A16", "int4 weights (symmetric, group 128), GPTQ", 0.96, group_size=128),
    "w4a16-awq": Preset("W4A16", "int4 weights (group 128), AWQ", 0.96, group_size=128),
    "w4a16-asym": Preset("W4A16_ASYM", "int4 weights (asymmetric, group 128), GPTQ", 0.96, group_size=128),
    "w8a16": Preset("W8A16", "int8 weights, 16-bit activations", 0.99, group_size=128),
    "w8a8-int8": Preset("W8A8", "int8 weights per channel, int8 dynamic per-token activations", 0.99),
    "fp8-dynamic": Preset("FP8_DYNAMIC", "fp8 e4m3 weights per channel, dynamic per-token activations", 0.99),
    "fp8-gptq": Preset(
        "FP8_DYNAMIC", "fp8 e4m3 weights per channel placed by GPTQ, dynamic per-token activations", 0.99
    ),
    "fp8-kv": Preset(
        "FP8_DYNAMIC+KV_FP8", "fp8-dynamic, and an fp8 KV cache with calibrated scales (twice the tokens)", 0.99
    ),
    "fp8-static": Preset("FP8", "fp8 e4m3 weights per tensor, static per-tensor activation scales (calibrated)", 0.99),
    # the block's width falls back as a group does
    "fp8-block": Preset(
        "FP8_BLOCK",
        "fp8 e4m3 weights per 128x128 block, dynamic activations per token and 128 inputs",
        0.99,
        group_size=128,
    ),
    "nvfp4a16": Preset("NVFP4A16", "fp4 e2m1 weights, group 16, fp8 scales over a global scale", 0.96, group_size=16),
    "mxfp4a16": Preset("MXFP4A16", "fp4 e2m1 weights, group 32, power-of-two scales", 0.96, group_size=32),
    "2of4": Preset("2:4", "2:4 sparsity, SparseGPT", 0.96),
    "2of4-magnitude": Preset("2:4", "2:4 sparsity, magnitude pruning", 0.96),
    "2of4-fp8": Preset("2:4+FP8_DYNAMIC", "2:4 sparsity (SparseGPT) with fp8 dynamic quantization", 0.96),
    "2of4-w4a16": Preset("2:4+W4A16", "2:4 sparsity (SparseGPT) with int4 weights", 0.96, group_size=128),
}


# Compute capabilities users pick their GPU by: one per generation they deploy on.
GPUS = {
    "7.5": "7.5 (T4, RTX 20xx)",
    "8.0": "8.0 (A100, A30)",
    "8.6": "8.6 (A10, A40, RTX 30xx)",
    "8.9": "8.9 (L4, L40S, RTX 40xx)",
    "9.0": "9.0 (H100, H200, GH200)",
    "10.0": "10.0 (B200)",
}


# Benchmark workload profiles, name -> what it measures. The benchmark engineer keeps
# this equal to the engine's own list; the web form and the API offer these names.
PROFILES: dict[str, str] = {
    "chat": "chat: 512 tokens in, 256 out",
    "rag": "retrieval-augmented generation: 4k in, 256 out",
    "summarization": "summarization: 2k in, 512 out",
    "code": "code completion: 256 in, 1k out",
    "single-stream": "single stream: one request at a time, latency",
    "sweep": "concurrency sweep: 1, 4, 16, 64, max",
}


# The evaluation suites (`evals.SUITES` defines them; a test keeps the names equal). Name -> what
# a user picks it for, for the job form without importing the evaluation library.
SUITES: dict[str, str] = {
    "quick": "Quick check on a CPU in minutes: ARC-Easy, HellaSwag, WinoGrande, LAMBADA subsets",
    "openllm-v1": "Open LLM Leaderboard v1: ARC-C, HellaSwag, MMLU, TruthfulQA, WinoGrande, GSM8K (GPU)",
    "wikitext": "WikiText-2 perplexity",
    "chat-quick": "Chat check on a CPU: GSM8K 5-shot subset and instruction following, with the chat template",
    "openllm-v2": "Open LLM Leaderboard v2: IFEval, BBH, MATH-hard, GPQA, MuSR, MMLU-Pro, chat template (GPU)",
}
