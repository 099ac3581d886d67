"""KV-cache write: scatter this step's keys and values to their cache slots, quantized on the way
into an FP8 cache (twin: `kernels.reference.store_kvcache`)."""

import torch
import triton
import triton.language as tl

from kernels.gemm_scaled import _round_to_e4m3
from kernels.reference import FP8_MAX
from kernels.util import interpreting


@triton.jit
def _quantize_kv(x, scale, FP8_MAX: tl.constexpr, INTERPRET: tl.constexpr):
    # div_rn: the default float32 division is approximate on GPUs, and codes must round as the
    # reference's do
    y = tl.clamp(tl.math.div_rn(x.to(tl.float32), scale), -FP8_MAX, FP8_MAX)
    if INTERPRET:
        y = _round_to_e4m3(y)
    return y.to(tl.float8e4nv)


@triton.jit
def _store_kvcache_kernel(
    key_ptr,
    value_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_mapping_ptr,
    num_tokens,
    num_kv_heads,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_kc_block,
    stride_kc_slot,
    stride_kc_head,
    stride_vc_block,
    stride_vc_slot,
    stride_vc_head,
    k_scale,
    v_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
    FP8: tl.constexpr,
    FP8_MAX: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    token_ok = tokens < num_tokens
    # int64: slot * stride outgrows int32 in a large cache
    slots = tl.load(slot_mapping_ptr + tokens, mask=token_ok, other=-1).to(tl.int64)
    tokens = tokens.to(tl.int64)
    heads = tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    mask = (
        (token_ok & (slots >= 0))[:, None, None]
        & (heads < num_kv_heads)[None, :, None]
        & (dims < HEAD_DIM)[None, None, :]
    )
    blocks = (slots // BLOCK_SIZE)[:, None, None]
    offsets = (slots % BLOCK_SIZE)[:, None, None]
    src_t = tokens[:, None, None]
    head_dim = heads[None, :, None]
    dim = dims[None, None, :]
    k = tl.load(key_ptr + src_t * stride_kt + head_dim * stride_kh + dim, mask=mask)
    v = tl.load(value_ptr + src_t * stride_vt + head_dim * stride_vh + dim, mask=mask)
    k_dst = k_cache_ptr + blocks * stride_kc_block + offsets * stride_kc_slot + head_dim * stride_kc_head + dim
    v_dst = v_cache_ptr + blocks * stride_vc_block + offsets * stride_vc_slot + head_dim * stride_vc_head + dim
    if FP8:
        k = _quantize_kv(k, k_scale, FP8_MAX, INTERPRET)
        v = _quantize_kv(v, v_scale, FP8_MAX, INTERPRET)
    tl.store(k_dst, k.to(k_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(v_dst, v.to(v_cache_ptr.dtype.element_ty), mask=mask)


def cache_strides(k_cache: torch.Tensor, v_cache: torch.Tensor) -> tuple[int, ...]:
    """The block, slot and head strides of the K then the V cache, for kernels that address
    them as [num_blocks, block_size, num_kv_heads, head_dim] with head_dim contiguous."""
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("the KV cache must be contiguous in head_dim")
    return *k_cache.stride()[:3], *v_cache.stride()[:3]


def store_kvcache(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    *,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> None:
    num_tokens, num_kv_heads, head_dim = key.shape
    if key.stride(-1) != 1:
        key = key.contiguous()
    if value.stride(-1) != 1:
        value = value.contiguous()
    strides = cache_strides(k_cache, v_cache)
    block_h = triton.next_power_of_2(num_kv_heads)
    block_d = triton.next_power_of_2(head_dim)
    block_t = 1
    if interpreting():
        block_t = min(max(1, 16384 // (block_h * block_d)), triton.next_power_of_2(max(num_tokens, 1)))
    _store_kvcache_kernel[(triton.cdiv(num_tokens, block_t),)](
        key,
        value,
        k_cache,
        v_cache,
        slot_mapping,
        num_tokens,
        num_kv_heads,
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        *strides,
        k_scale,
        v_scale,
        HEAD_DIM=head_dim,
        BLOCK_SIZE=k_cache.shape[1],
        BLOCK_T=block_t,
        BLOCK_H=block_h,
        BLOCK_D=block_d,
        FP8=k_cache.dtype == torch.float8_e4m3fn,
        FP8_MAX=FP8_MAX,
        INTERPRET=interpreting(),
        num_warps=max(1, min(block_t * block_h * block_d // 256, 8)),
    )
