"""Model and engine configuration.

`ModelConfig` is read straight from a Hugging Face `config.json` (no transformers import), with
the defaults of the transformers config class of each supported architecture, so a checkpoint
that omits a key behaves as it does in transformers. The mixture-of-experts families (Qwen2-MoE,
Qwen3-MoE, Mixtral) add a `MoeConfig`. The engine runs more architectures than the hub accepts
for jobs (`common.support`): the MoE families and Gemma 2 / Gemma 3 are the engine's alone for now.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from common.checkpoint_files import check_checkpoint_folder
from common.dtypes import compute_dtype

# architecture name -> defaults that differ between the families (transformers' config classes)
_ARCHITECTURES: dict[str, dict] = {
    "LlamaForCausalLM": {"qkv_bias": None, "qk_norm": False, "sliding": None},
    "MistralForCausalLM": {"qkv_bias": False, "qk_norm": False, "sliding": "mistral"},
    "Qwen2ForCausalLM": {"qkv_bias": True, "qk_norm": False, "sliding": "qwen"},
    "Qwen3ForCausalLM": {"qkv_bias": None, "qk_norm": True, "sliding": "qwen"},
    "GraniteForCausalLM": {"qkv_bias": None, "qk_norm": False, "sliding": None},
    "Phi3ForCausalLM": {"qkv_bias": False, "qk_norm": False, "sliding": "given"},
    "Qwen2MoeForCausalLM": {"qkv_bias": True, "qk_norm": False, "sliding": "qwen2_moe"},
    "Qwen3MoeForCausalLM": {"qkv_bias": None, "qk_norm": True, "sliding": "qwen3_moe"},
    "MixtralForCausalLM": {"qkv_bias": False, "qk_norm": False, "sliding": "given"},
    "Gemma2ForCausalLM": {"qkv_bias": None, "qk_norm": False, "sliding": "gemma2"},
    "Gemma3ForCausalLM": {"qkv_bias": None, "qk_norm": True, "sliding": "gemma3"},
}
SUPPORTED_ARCHITECTURES = tuple(_ARCHITECTURES)
# architectures refused with a word on what to run instead
_REFUSED_ARCHITECTURES = {
    "Gemma3ForConditionalGeneration": "the multimodal Gemma 3 (Gemma3ForConditionalGeneration) is not supported; "
    "the engine runs text-only Gemma 3 checkpoints (Gemma3ForCausalLM, such as gemma-3-1b)",
}
# the families that put attention_bias on o_proj too (Qwen2's biases are on q/k/v only)
_O_BIAS_ARCHITECTURES = (
    "LlamaForCausalLM",
    "Qwen3ForCausalLM",
    "GraniteForCausalLM",
    "Qwen3MoeForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
)
# transformers' Gemma2Config and Gemma3TextConfig defaults that differ from the other families'
_GEMMA = {
    "num_key_value_heads": 4,
    "head_dim": 256,
    "tie_word_embeddings": True,
    "hidden_activation": "gelu_pytorch_tanh",
    "query_pre_attn_scalar": 256,
}
_GEMMA_DEFAULTS = {
    "Gemma2ForCausalLM": {
        **_GEMMA,
        "max_position_embeddings": 8192,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    },
    "Gemma3ForCausalLM": {**_GEMMA, "max_position_embeddings": 131072},
}
_LAYER_TYPES = ("full_attention", "sliding_attention")
_ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class UnsupportedModelError(ValueError):
    """The checkpoint is of a kind this engine does not run (yet)."""


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None
    # YaRN: the rotation counts that bound its blend of interpolated and original frequencies,
    # whether those bounds round to whole dimensions, and the factor on cos and sin
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    truncate: bool = True
    attention_factor: float = 1.0


@dataclass(frozen=True)
class MoeConfig:
    """The sparse MLP of the mixture-of-experts families: a router picks `top_k` of
    `num_experts` gated MLPs per token (softmax, then top-k, renormalized to sum to 1 when
    `renormalize`), whose outputs are summed with those weights."""

    num_experts: int
    top_k: int
    intermediate_size: int  # of each expert
    renormalize: bool
    # the decoder layers whose MLP is sparse; the others have the dense MLP of intermediate_size
    layers: frozenset[int]
    # Qwen2-MoE's expert that every token goes through, scaled by a sigmoid gate (0: none)
    shared_expert_size: int = 0


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    max_position_embeddings: int
    rope: RopeConfig
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool
    # per decoder layer, how many positions its queries see, their own included (None: all)
    layer_windows: tuple[int | None, ...]
    dtype: torch.dtype
    # config.json's quantization_config; `layers.linear.linear_method_for` decides what runs it
    quantization: dict | None = None
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    # Phi-3 stores q/k/v as one qkv_proj and gate/up as one gate_up_proj
    fused_checkpoint: bool = False
    # Granite's scalings: of the embeddings, of each block's output before it joins the residual
    # stream, of attention scores (None: 1/sqrt(head_dim)), and the divisor of the logits; Gemma
    # scales embeddings by sqrt(hidden) and scores by query_pre_attn_scalar ** -0.5
    embedding_multiplier: float = 1.0
    residual_multiplier: float = 1.0
    attention_multiplier: float | None = None
    logits_scaling: float = 1.0
    moe: MoeConfig | None = None
    # Gemma's parts: RMSNorms scale by (1 + weight), attention and MLP outputs are normed before
    # they join the residual stream, the embedding multiplier is rounded to the model dtype
    gemma: bool = False
    hidden_act: str = "silu"  # Gemma's "gelu_pytorch_tanh": GeGLU
    # the rope of the windowed layers where it is not `rope` (Gemma 3's local base frequency)
    local_rope: RopeConfig | None = None
    # tanh soft-capping, cap * tanh(x / cap), of attention scores and of the logits (Gemma 2)
    attn_softcap: float | None = None
    final_softcap: float | None = None

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> "ModelConfig":
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config.json in {model_dir}")
        check_checkpoint_folder(model_dir)  # config.json too may be a link to someone else's file
        return cls.from_dict(json.loads(path.read_text()), generation_config=_generation_config(Path(model_dir)))

    @classmethod
    def from_dict(cls, cfg: dict, generation_config: dict | None = None) -> "ModelConfig":
        archs = cfg.get("architectures") or []
        arch = next((a for a in archs if a in _ARCHITECTURES), None)
        if arch is None:
            refused = next((a for a in archs if a in _REFUSED_ARCHITECTURES), None)
            if refused:
                raise UnsupportedModelError(_REFUSED_ARCHITECTURES[refused])
            raise UnsupportedModelError(
                f"architecture {archs or cfg.get('model_type')!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        family = _ARCHITECTURES[arch]
        gemma = arch in _GEMMA_DEFAULTS
        cfg = {**_GEMMA_DEFAULTS.get(arch, {}), **cfg}
        # Gemma's config classes read hidden_activation (their checkpoints often carry both)
        act_key, act = ("hidden_activation", "gelu_pytorch_tanh") if gemma else ("hidden_act", "silu")
        if cfg.get(act_key, act) != act:
            raise UnsupportedModelError(f"{act_key} {cfg[act_key]!r} is not supported for {arch} (only {act})")
        if cfg.get("use_bidirectional_attention"):
            raise UnsupportedModelError("bidirectional attention (embedding models) is not supported")
        if cfg.get("partial_rotary_factor", 1.0) != 1.0:
            raise UnsupportedModelError("partial rotary embeddings are not supported")
        num_heads = cfg["num_attention_heads"]
        attention_bias = bool(cfg.get("attention_bias", False))
        qkv_bias = attention_bias if family["qkv_bias"] is None else family["qkv_bias"]
        if arch == "Qwen2MoeForCausalLM":  # its config may turn the q/k/v biases off
            qkv_bias = bool(cfg.get("qkv_bias", True))
        o_bias = attention_bias if arch in _O_BIAS_ARCHITECTURES else False
        moe = _moe_config(arch, cfg)
        if moe is not None and cfg.get("quantization_config"):
            raise UnsupportedModelError(
                f"{arch}: MoE experts are not yet supported quantized; run the unquantized checkpoint"
            )
        rope, local_rope = _gemma3_ropes(cfg) if arch == "Gemma3ForCausalLM" else (_rope_config(cfg), None)
        gen = generation_config or {}
        eos = gen.get("eos_token_id", cfg.get("eos_token_id"))
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        return cls(
            architecture=arch,
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=cfg.get("num_key_value_heads") or num_heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // num_heads,
            vocab_size=cfg["vocab_size"],
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            max_position_embeddings=cfg.get("max_position_embeddings", 2048),
            rope=rope,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            mlp_bias=bool(cfg.get("mlp_bias", False)) if arch in ("LlamaForCausalLM", "GraniteForCausalLM") else False,
            qk_norm=family["qk_norm"],
            layer_windows=_layer_windows(family["sliding"], cfg),
            dtype=_checkpoint_dtype(cfg),
            quantization=cfg.get("quantization_config"),
            eos_token_ids=eos_ids,
            bos_token_id=gen.get("bos_token_id", cfg.get("bos_token_id")),
            fused_checkpoint=arch == "Phi3ForCausalLM",
            moe=moe,
            local_rope=local_rope,
            **_scalings(arch, cfg),
            **(_gemma_parts(arch, cfg) if gemma else {}),
        )


def _scalings(arch: str, cfg: dict) -> dict:
    """ModelConfig's multipliers where a family has them: Granite's (transformers' GraniteConfig
    defaults, which are Llama's behaviour), Gemma's embeddings by sqrt(hidden) and attention
    scores by query_pre_attn_scalar ** -0.5."""
    if arch == "GraniteForCausalLM":
        return dict(
            embedding_multiplier=float(cfg.get("embedding_multiplier", 1.0)),
            residual_multiplier=float(cfg.get("residual_multiplier", 1.0)),
            attention_multiplier=float(cfg.get("attention_multiplier", 1.0)),
            logits_scaling=float(cfg.get("logits_scaling", 1.0)),
        )
    if arch in _GEMMA_DEFAULTS:
        return dict(
            embedding_multiplier=cfg["hidden_size"] ** 0.5,
            attention_multiplier=_positive_number(cfg, "query_pre_attn_scalar") ** -0.5,
        )
    return {}


def _gemma_parts(arch: str, cfg: dict) -> dict:
    # Gemma3TextConfig has attn_logit_softcapping too, but transformers' Gemma 3 never applies it
    return dict(
        gemma=True,
        hidden_act="gelu_pytorch_tanh",
        attn_softcap=_softcap(cfg, "attn_logit_softcapping") if arch == "Gemma2ForCausalLM" else None,
        final_softcap=_softcap(cfg, "final_logit_softcapping"),
    )


def _softcap(cfg: dict, key: str) -> float | None:
    return None if cfg.get(key) is None else _positive_number(cfg, key)


def _positive_number(cfg: dict, key: str) -> float:
    value = cfg.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise UnsupportedModelError(f"config.json's {key} {value!r} is not a positive number")
    return float(value)


def _moe_config(arch: str, cfg: dict) -> MoeConfig | None:
    """The sparse MLP with transformers' defaults of each family: Mixtral's experts are as wide as
    intermediate_size and every layer is sparse; Qwen's have moe_intermediate_size, and the
    layers in mlp_only_layers or off every decoder_sparse_step-th are dense."""
    num_layers = cfg["num_hidden_layers"]
    if arch == "MixtralForCausalLM":
        num_experts = _positive(cfg, ("num_local_experts", "num_experts"), 8)
        top_k = _positive(cfg, ("num_experts_per_tok",), 2)
        layers, size, renormalize, shared = frozenset(range(num_layers)), cfg["intermediate_size"], True, 0
    elif arch in ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"):
        qwen3 = arch == "Qwen3MoeForCausalLM"
        # transformers' Qwen3MoeConfig writes num_experts as num_local_experts
        num_experts = _positive(
            cfg, ("num_local_experts", "num_experts") if qwen3 else ("num_experts",), 128 if qwen3 else 60
        )
        top_k = _positive(cfg, ("num_experts_per_tok",), 8 if qwen3 else 4)
        size = _positive(cfg, ("moe_intermediate_size",), 768 if qwen3 else 1408)
        shared = 0 if qwen3 else _positive(cfg, ("shared_expert_intermediate_size",), 5632)
        step = _positive(cfg, ("decoder_sparse_step",), 1)
        dense = cfg.get("mlp_only_layers") or []
        if not isinstance(dense, list) or not all(isinstance(i, int) for i in dense):
            raise UnsupportedModelError(f"mlp_only_layers {dense!r} is not a list of layer numbers")
        layers = frozenset(i for i in range(num_layers) if i not in dense and (i + 1) % step == 0)
        renormalize = bool(cfg.get("norm_topk_prob", False))
    else:
        return None
    if top_k > num_experts:
        raise UnsupportedModelError(f"num_experts_per_tok {top_k} is more than the {num_experts} experts")
    return MoeConfig(num_experts, top_k, size, renormalize, layers, shared)


def _positive(cfg: dict, keys: tuple[str, ...], default: int) -> int:
    """The first of `keys` that config.json has (else `default`), which must be a positive int."""
    key = next((k for k in keys if cfg.get(k) is not None), keys[0])
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UnsupportedModelError(f"config.json's {key} {value!r} is not a positive integer")
    return value


def _generation_config(model_dir: Path) -> dict:
    path = model_dir / "generation_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _rope_config(cfg: dict, params: dict | None = None) -> RopeConfig:
    # transformers >= 5 writes `rope_parameters` (theta inside); older checkpoints write
    # `rope_theta` next to an optional `rope_scaling`
    params = dict(params if params is not None else cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise UnsupportedModelError(f"rope type {rope_type!r} is not supported yet; supported: {_ROPE_TYPES}")
    original = params.get("original_max_position_embeddings", cfg.get("max_position_embeddings"))
    factor = params.get("factor")
    if factor is None:  # YaRN configs may give only the two lengths (DeepSeek's do)
        factor = cfg.get("max_position_embeddings", original) / original if rope_type == "yarn" else 1.0
    return RopeConfig(
        theta=float(params.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        type=rope_type,
        factor=float(factor),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=original,
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        truncate=bool(params.get("truncate", True)),
        attention_factor=_yarn_attention_factor(params, float(factor)) if rope_type == "yarn" else 1.0,
    )


def _yarn_attention_factor(params: dict, factor: float) -> float:
    """YaRN's factor on cos and sin (transformers' rule): given, else from `factor` and the
    optional mscale pair."""
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if params.get("mscale") and params.get("mscale_all_dim"):
        return mscale(factor, params["mscale"]) / mscale(factor, params["mscale_all_dim"])
    return mscale(factor)


def _gemma3_ropes(cfg: dict) -> tuple[RopeConfig, RopeConfig]:
    """Gemma 3's ropes of its global and its local (windowed) layers: transformers >= 5 writes
    `rope_parameters` per layer type; older checkpoints write the global layers' `rope_theta`
    and `rope_scaling`, and the local layers' `rope_local_base_freq`."""
    params = cfg.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise UnsupportedModelError(f"rope_parameters {params!r} is not a mapping")
    if "full_attention" in params or "sliding_attention" in params:
        full, local = params.get("full_attention") or {}, params.get("sliding_attention") or {}
    else:
        full = {**(cfg.get("rope_scaling") or {}), "rope_theta": cfg.get("rope_theta", 1_000_000.0)}
        local = {"rope_theta": cfg.get("rope_local_base_freq", 10_000.0)}
    if not isinstance(full, dict) or not isinstance(local, dict):
        raise UnsupportedModelError(f"rope_parameters {params!r} do not map layer types to rope settings")
    return _rope_config(cfg, {"rope_theta": 1_000_000.0, **full}), _rope_config(cfg, {"rope_theta": 10_000.0, **local})


def _layer_windows(kind: str | None, cfg: dict) -> tuple[int | None, ...]:
    """Each layer's attention window, which layers get one decided as the family's transformers
    config class decides it."""
    num_layers = cfg["num_hidden_layers"]
    window = _sliding_window(cfg, kind)
    if window is None:
        return (None,) * num_layers
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise UnsupportedModelError(f"config.json's sliding_window {window!r} is not a positive integer")
    types = cfg.get("layer_types")
    if types is not None and kind in ("qwen", "qwen2_moe", "gemma2", "gemma3"):
        if not isinstance(types, list) or len(types) != num_layers or any(t not in _LAYER_TYPES for t in types):
            raise UnsupportedModelError(
                f"layer_types {types!r} does not give one of {', '.join(_LAYER_TYPES)} for each of {num_layers} layers"
            )
        windowed = [t == "sliding_attention" for t in types]
    elif kind == "qwen":  # the layers from max_window_layers on
        windowed = [i >= _max_window_layers(cfg) for i in range(num_layers)]
    elif kind == "qwen2_moe":  # every other layer below max_window_layers
        windowed = [i % 2 == 0 and i < _max_window_layers(cfg) for i in range(num_layers)]
    elif kind in ("gemma2", "gemma3"):  # local layers with a global one every `pattern` layers
        pattern = 2 if kind == "gemma2" else _positive(cfg, ("sliding_window_pattern",), 6)
        windowed = [(i + 1) % pattern != 0 for i in range(num_layers)]
    else:  # Mistral, Phi-3, Mixtral, Qwen3-MoE: every layer
        windowed = [True] * num_layers
    return tuple(window if w else None for w in windowed)


def _sliding_window(cfg: dict, kind: str | None) -> int | None:
    if kind is None or (kind.startswith("qwen") and not cfg.get("use_sliding_window", False)):
        return None
    if kind == "given":  # Phi3Config and MixtralConfig have no window unless the checkpoint sets one
        return cfg.get("sliding_window")
    # the other config classes default to a 4096 window when the key is absent
    return cfg.get("sliding_window", 4096)


def _max_window_layers(cfg: dict) -> int:
    value = cfg.get("max_window_layers", 28)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UnsupportedModelError(f"config.json's max_window_layers {value!r} is not a whole number")
    return value


def _checkpoint_dtype(cfg: dict) -> torch.dtype:
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    if name not in _DTYPES:
        raise UnsupportedModelError(f"checkpoint dtype {name!r} is not supported; use one of {list(_DTYPES)}")
    return _DTYPES[name]


def resolve_dtype(dtype: str | torch.dtype, model: ModelConfig, device: torch.device) -> torch.dtype:
    """The dtype the engine computes in; "auto" follows `common.dtypes.compute_dtype` (the
    checkpoint's dtype, but float32 for half-precision checkpoints on a CPU without native bf16)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return _DTYPES[compute_dtype(str(model.dtype).removeprefix("torch."), device.type)]
    aliases = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    name = aliases.get(dtype, dtype)
    if name not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


KV_CACHE_DTYPES = ("auto", "fp8", "bfloat16", "float16", "float32")
_KV_CACHE_ALIASES = {"fp8_e4m3": "fp8"}


def resolve_kv_cache_dtype(
    kv_cache_dtype: str, dtype: torch.dtype, device: torch.device, quantization: dict | None = None
) -> torch.dtype:
    """The dtype K and V are stored in. "auto" is the checkpoint's choice, as vLLM reads it: FP8
    where its compressed-tensors `quantization_config` has a `kv_cache_scheme` (and the device
    has FP8), else the compute dtype; "fp8" (or "fp8_e4m3", as vLLM names it) is float8_e4m3fn
    with a float32 scale per layer for K and for V; a float dtype's name stores K and V in it."""
    name = _KV_CACHE_ALIASES.get(kv_cache_dtype, kv_cache_dtype)
    if name not in KV_CACHE_DTYPES:
        raise ValueError(f"kv_cache_dtype {kv_cache_dtype!r} is not one of {', '.join(KV_CACHE_DTYPES)} (fp8_e4m3)")
    old_gpu = device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9)
    if name == "auto":
        return torch.float8_e4m3fn if (quantization or {}).get("kv_cache_scheme") and not old_gpu else dtype
    if name != "fp8":
        return getattr(torch, name)
    if old_gpu:
        major, minor = torch.cuda.get_device_capability(device)
        raise ValueError(f"an FP8 KV cache needs a GPU of compute capability 8.9 or newer; this one is {major}.{minor}")
    return torch.float8_e4m3fn


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class EngineConfig:
    model_dir: Path
    model: ModelConfig
    dtype: torch.dtype
    device: torch.device
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048
    num_kv_blocks: int | None = None
    kv_cache_memory: int | None = None
    enable_prefix_caching: bool = True
    seed: int = 0
    kv_cache_dtype: torch.dtype | None = None  # None: dtype (`resolve_kv_cache_dtype`)

    def __post_init__(self) -> None:
        if self.kv_cache_dtype is None:
            self.kv_cache_dtype = self.dtype
        if self.block_size <= 0 or self.max_num_seqs <= 0 or self.max_num_batched_tokens <= 0:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be positive")
