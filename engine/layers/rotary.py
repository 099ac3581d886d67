"""Rotary position embedding with a precomputed fp32 cos/sin cache (the layout `kernels` wants)."""

import math

import torch
from torch import nn

import kernels
from engine.config import RopeConfig


def inverse_frequencies(rope: RopeConfig, head_dim: int) -> torch.Tensor:
    """Per-pair inverse frequencies, computed as transformers computes them (same fp32 ops)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (rope.theta**exponents)
    if rope.type == "linear":
        return inv_freq / rope.factor
    if rope.type == "llama3":
        return _llama3(inv_freq, rope)
    if rope.type == "yarn":
        return _yarn(rope, head_dim)
    # "dynamic" NTK scaling only changes frequencies once a sequence outgrows
    # max_position_embeddings; the engine caps max_model_len there, so it is the default inside
    return inv_freq


def _llama3(inv_freq: torch.Tensor, rope: RopeConfig) -> torch.Tensor:
    # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the middle band blended
    old_len = rope.original_max_position_embeddings
    low_freq_wavelen = old_len / rope.low_freq_factor
    high_freq_wavelen = old_len / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _yarn(rope: RopeConfig, head_dim: int) -> torch.Tensor:
    # YaRN (arXiv:2309.00071): pairs that turn fewer than beta_slow times over the original
    # context are interpolated by `factor`, those turning more than beta_fast times kept, a ramp between
    pos_freqs = rope.theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    extrapolated, interpolated = 1.0 / pos_freqs, 1.0 / (rope.factor * pos_freqs)

    def dimension(rotations: float) -> float:
        turns = rope.original_max_position_embeddings / (rotations * 2 * math.pi)
        return head_dim * math.log(turns) / (2 * math.log(rope.theta))

    low, high = dimension(rope.beta_fast), dimension(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low if high != low else 0.001)).clamp(
        0, 1
    )
    keep = 1 - ramp
    return interpolated * (1 - keep) + extrapolated * keep


def cos_sin_cache(rope: RopeConfig, head_dim: int, max_position: int) -> torch.Tensor:
    """[max_position, head_dim] fp32: cos of each pair's angle in the first half, sin in the second
    (both times YaRN's attention factor, 1 for the other rope types)."""
    inv_freq = inverse_frequencies(rope, head_dim)
    positions = torch.arange(max_position, dtype=torch.int64).float()
    angles = positions[:, None] * inv_freq[None, :]
    cache = torch.cat((angles.cos(), angles.sin()), dim=-1)
    return cache if rope.attention_factor == 1.0 else cache * rope.attention_factor


class RotaryEmbedding(nn.Module):
    def __init__(self, rope: RopeConfig, head_dim: int, max_position: int) -> None:
        super().__init__()
        self.register_buffer("cos_sin_cache", cos_sin_cache(rope, head_dim, max_position), persistent=False)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.rotary_embedding(positions, q, k, self.cos_sin_cache)
