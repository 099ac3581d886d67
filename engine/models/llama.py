"""One model class for the Llama family: Llama 2/3, Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k norm),
Granite (scaled embeddings, block outputs, attention scores and logits), Phi-3 (q/k/v and gate/up
stored fused), the mixture-of-experts Qwen2-MoE (plus a gated shared expert), Qwen3-MoE and
Mixtral, whose sparse layers replace the MLP by a router and experts, and Gemma 2 / Gemma 3
((1 + weight) norms on both sides of attention and MLP, GeGLU, soft-capped scores and logits,
Gemma 3's local layers with a rope of their own). Any family's layers may attend through a
sliding window (`ModelConfig.layer_windows`).

Tokens of all sequences of a step are packed along dim 0; the paged attention layer finds each
sequence's context through the `AttentionMetadata`.
"""

import torch
from torch import nn

from engine.config import ModelConfig
from engine.layers.activation import GeluTanhAndMul, SiluAndMul
from engine.layers.attention import AttentionMetadata, PagedAttention
from engine.layers.embed import LMHead, VocabEmbedding
from engine.layers.linear import Linear, LinearMethod
from engine.layers.moe import FusedExperts, select_experts
from engine.layers.norm import RMSNorm
from engine.layers.rotary import RotaryEmbedding


def _rms_norm(cfg: ModelConfig, size: int, dtype: torch.dtype) -> RMSNorm:
    return RMSNorm(size, cfg.rms_norm_eps, dtype, unit_offset=cfg.gemma)


class Attention(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        rotary: RotaryEmbedding,
        method: LinearMethod,
        dtype: torch.dtype,
        prefix: str,
        window: int | None,
    ) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim
        if cfg.fused_checkpoint:
            sizes, qkv_names = [self.q_size + 2 * self.kv_size], [f"{prefix}.qkv_proj"]
        else:
            sizes, qkv_names = [self.q_size, self.kv_size, self.kv_size], [f"{prefix}.{n}_proj" for n in "qkv"]
        self.qkv_proj = Linear(cfg.hidden_size, sizes, cfg.qkv_bias, method, dtype, qkv_names)
        self.o_proj = Linear(self.q_size, [cfg.hidden_size], cfg.o_bias, method, dtype, [f"{prefix}.o_proj"])
        if cfg.qk_norm:
            self.q_norm = _rms_norm(cfg, cfg.head_dim, dtype)
            self.k_norm = _rms_norm(cfg, cfg.head_dim, dtype)
        self.qk_norm = cfg.qk_norm
        self.rotary = rotary
        self.attn = PagedAttention(
            cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.attention_multiplier, window, cfg.attn_softcap
        )

    def forward(self, positions: torch.Tensor, x: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q = self.q_norm(q)
            k = self.k_norm(k)
        q, k = self.rotary(positions, q, k)
        out = self.attn(q, k, v, meta)
        return self.o_proj(out.view(-1, self.q_size))


class MLP(nn.Module):
    def __init__(
        self, cfg: ModelConfig, method: LinearMethod, dtype: torch.dtype, prefix: str, size: int | None = None
    ) -> None:
        super().__init__()
        size = size or cfg.intermediate_size
        if cfg.fused_checkpoint:
            sizes, gate_up_names = [2 * size], [f"{prefix}.gate_up_proj"]
        else:
            sizes, gate_up_names = [size, size], [f"{prefix}.gate_proj", f"{prefix}.up_proj"]
        self.gate_up_proj = Linear(cfg.hidden_size, sizes, cfg.mlp_bias, method, dtype, gate_up_names)
        self.down_proj = Linear(size, [cfg.hidden_size], cfg.mlp_bias, method, dtype, [f"{prefix}.down_proj"])
        self.act = GeluTanhAndMul() if cfg.hidden_act == "gelu_pytorch_tanh" else SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


class SparseMoeBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, method: LinearMethod, dtype: torch.dtype, prefix: str) -> None:
        super().__init__()
        moe = cfg.moe
        self.top_k, self.renormalize = moe.top_k, moe.renormalize
        self.gate = Linear(cfg.hidden_size, [moe.num_experts], False, method, dtype, [f"{prefix}.gate"])
        self.experts = FusedExperts(moe.num_experts, cfg.hidden_size, moe.intermediate_size, dtype)
        self.shared_expert = None
        if moe.shared_expert_size:
            self.shared_expert = MLP(cfg, method, dtype, f"{prefix}.shared_expert", moe.shared_expert_size)
            self.shared_expert_gate = Linear(
                cfg.hidden_size, [1], False, method, dtype, [f"{prefix}.shared_expert_gate"]
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = select_experts(self.gate(x), self.top_k, self.renormalize)
        out = self.experts(x, weights, ids)
        if self.shared_expert is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return out


class DecoderLayer(nn.Module):
    def __init__(
        self, cfg: ModelConfig, rotary: RotaryEmbedding, method: LinearMethod, dtype: torch.dtype, index: int
    ) -> None:
        super().__init__()
        prefix = f"model.layers.{index}"  # the checkpoint's module names, which quantization configs target
        self.self_attn = Attention(cfg, rotary, method, dtype, f"{prefix}.self_attn", cfg.layer_windows[index])
        if cfg.moe is not None and index in cfg.moe.layers:
            self.mlp = SparseMoeBlock(cfg, method, dtype, f"{prefix}.mlp")
        else:
            self.mlp = MLP(cfg, method, dtype, f"{prefix}.mlp")
        self.input_layernorm = _rms_norm(cfg, cfg.hidden_size, dtype)
        # Llama's norm before the MLP, Gemma's after attention (whose pre_feedforward_layernorm
        # comes before the MLP and post_feedforward_layernorm after it)
        self.post_attention_layernorm = _rms_norm(cfg, cfg.hidden_size, dtype)
        self.gemma = cfg.gemma
        if cfg.gemma:
            self.pre_feedforward_layernorm = _rms_norm(cfg, cfg.hidden_size, dtype)
            self.post_feedforward_layernorm = _rms_norm(cfg, cfg.hidden_size, dtype)
        self.residual_multiplier = cfg.residual_multiplier

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # the residual stream travels beside the hidden state so each add fuses into the next norm
        if residual is None:
            residual = x
            x = self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, meta)
        if self.gemma:
            x, residual = self.pre_feedforward_layernorm(self.post_attention_layernorm(x), residual)
            return self.post_feedforward_layernorm(self.mlp(x)), residual
        if self.residual_multiplier != 1.0:
            x = x * self.residual_multiplier
        x, residual = self.post_attention_layernorm(x, residual)
        x = self.mlp(x)
        if self.residual_multiplier != 1.0:
            x = x * self.residual_multiplier
        return x, residual


class Model(nn.Module):
    def __init__(self, cfg: ModelConfig, max_position: int, method: LinearMethod, dtype: torch.dtype) -> None:
        super().__init__()
        self.embed_tokens = VocabEmbedding(cfg.vocab_size, cfg.hidden_size, dtype)
        rotary = RotaryEmbedding(cfg.rope, cfg.head_dim, max_position)
        local = RotaryEmbedding(cfg.local_rope, cfg.head_dim, max_position) if cfg.local_rope else rotary
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, rotary if cfg.layer_windows[i] is None else local, method, dtype, i)
            for i in range(cfg.num_layers)
        )
        self.norm = _rms_norm(cfg, cfg.hidden_size, dtype)
        self.embedding_multiplier = cfg.embedding_multiplier
        if cfg.gemma:  # transformers multiplies by a float32 tensor of it cast to the model dtype
            self.embedding_multiplier = torch.tensor(cfg.embedding_multiplier).to(dtype).item()

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        if self.embedding_multiplier != 1.0:
            x = x * self.embedding_multiplier
        residual = None
        for layer in self.layers:
            x, residual = layer(positions, x, residual, meta)
        x, _ = self.norm(x, residual)
        return x


_MIXTRAL_NAMES = {"block_sparse_moe": "mlp", "w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}


class LlamaForCausalLM(nn.Module):
    # checkpoint module name -> (our fused module, index of its output shard)
    packed_modules = {
        "q_proj": ("qkv_proj", 0),
        "k_proj": ("qkv_proj", 1),
        "v_proj": ("qkv_proj", 2),
        "gate_proj": ("gate_up_proj", 0),
        "up_proj": ("gate_up_proj", 1),
    }

    def __init__(self, cfg: ModelConfig, max_position: int, method: LinearMethod, dtype: torch.dtype) -> None:
        super().__init__()
        self.config = cfg
        # checkpoint module names the loader reads as ours: Mixtral's for its sparse block and experts
        self.checkpoint_names = _MIXTRAL_NAMES if cfg.architecture == "MixtralForCausalLM" else {}
        self.model = Model(cfg, max_position, method, dtype)
        tied = self.model.embed_tokens if cfg.tie_word_embeddings else None
        self.lm_head = LMHead(cfg.vocab_size, cfg.hidden_size, dtype, tied)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Final hidden states of every scheduled token, [T, hidden]."""
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden)
        if self.config.final_softcap is not None:
            logits = torch.tanh(logits / self.config.final_softcap) * self.config.final_softcap
        return logits if self.config.logits_scaling == 1.0 else logits / self.config.logits_scaling

    def attention_layers(self) -> list[PagedAttention]:
        return [layer.self_attn.attn for layer in self.model.layers]
