"""Kernels used by the engine. Each op runs its Triton kernel on CUDA tensors and its PyTorch
twin in `kernels.reference` otherwise, so the CPU path is the reference and importing this
package pulls in neither Triton nor a GPU. Paged attention alone has a faster CPU path of its
own (`kernels.cpu`, batched over sequences), held to the same reference. The Triton versions
live one family per module (`kernels.attention`, `kernels.cache`, `kernels.norm`,
`kernels.rotary`, `kernels.activation`) and can be called directly, e.g. on CPU tensors under
`TRITON_INTERPRET=1`."""

import torch

from kernels import cpu, reference


def store_kvcache(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    if key.is_cuda:
        from kernels import cache

        return cache.store_kvcache(key, value, k_cache, v_cache, slot_mapping)
    return reference.store_kvcache(key, value, k_cache, v_cache, slot_mapping)


def paged_attention(
    query: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    if query.is_cuda:
        from kernels import attention

        return attention.paged_attention(query, k_cache, v_cache, block_tables, seq_lens, query_start_loc, scale, out)
    return cpu.paged_attention(query, k_cache, v_cache, block_tables, seq_lens, query_start_loc, scale, out)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if x.is_cuda:
        from kernels import norm

        return norm.rms_norm(x, weight, eps)
    return reference.rms_norm(x, weight, eps)


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.is_cuda:
        from kernels import norm

        return norm.fused_add_rms_norm(x, residual, weight, eps)
    return reference.fused_add_rms_norm(x, residual, weight, eps)


def rms_norm_quant(
    x: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.is_cuda:
        from kernels import norm

        return norm.rms_norm_quant(x, weight, eps, dtype)
    return reference.rms_norm_quant(x, weight, eps, dtype)


def fused_add_rms_norm_quant(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if x.is_cuda:
        from kernels import norm

        return norm.fused_add_rms_norm_quant(x, residual, weight, eps, dtype)
    return reference.fused_add_rms_norm_quant(x, residual, weight, eps, dtype)


def rotary_embedding(
    positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor, cos_sin_cache: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if query.is_cuda:
        from kernels import rotary

        return rotary.rotary_embedding(positions, query, key, cos_sin_cache)
    return reference.rotary_embedding(positions, query, key, cos_sin_cache)


# longest row whose quantization the GPU kernels fuse into the norm or activation in front
# (one program holds the row); longer ones are quantized by the layer
FUSED_QUANT_MAX_COLS = 16384


def silu_and_mul_quant(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if x.is_cuda:
        from kernels import activation

        return activation.silu_and_mul_quant(x, dtype)
    return reference.silu_and_mul_quant(x, dtype)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    if x.is_cuda:
        from kernels import activation

        return activation.silu_and_mul(x)
    return reference.silu_and_mul(x)


def wna16_gemm(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    if x.is_cuda:
        from kernels import gemm_wna16

        return gemm_wna16.wna16_gemm(x, packed, scale, zero, bits, group_size)
    return reference.wna16_gemm(x, packed, scale, zero, bits, group_size)


def quantize_per_token(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if x.is_cuda:
        from kernels import gemm_scaled

        return gemm_scaled.quantize_per_token(x, dtype)
    return reference.quantize_per_token(x, dtype)


def scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    if a.is_cuda:
        from kernels import gemm_scaled

        return gemm_scaled.scaled_mm_fastest(a, b, scale_a, scale_b, out_dtype, bias)
    return reference.scaled_mm(a, b, scale_a, scale_b, out_dtype, bias)


__all__ = [
    "fused_add_rms_norm",
    "fused_add_rms_norm_quant",
    "paged_attention",
    "quantize_per_token",
    "rms_norm",
    "rms_norm_quant",
    "rotary_embedding",
    "scaled_mm",
    "silu_and_mul",
    "silu_and_mul_quant",
    "store_kvcache",
    "wna16_gemm",
]
