"""Neox-style rotary embedding of queries and keys in one launch (twin:
`kernels.reference.rotary_embedding`)."""

import torch
import triton
import triton.language as tl

from kernels.util import interpreting


@triton.jit
def _rotate_heads(
    x_ptr,
    out_ptr,
    tokens,
    token_ok,
    cos,
    sin,
    num_heads,
    stride_xt,
    stride_xh,
    stride_ot,
    stride_oh,
    HALF: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    heads = tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    mask = token_ok[:, None, None] & (heads < num_heads)[None, :, None] & (dims < HALF)[None, None, :]
    src = x_ptr + tokens[:, None, None] * stride_xt + heads[None, :, None] * stride_xh + dims[None, None, :]
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=mask, other=0.0).to(tl.float32)
    dst = out_ptr + tokens[:, None, None] * stride_ot + heads[None, :, None] * stride_oh + dims[None, None, :]
    tl.store(dst, (x1 * cos - x2 * sin).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(dst + HALF, (x2 * cos + x1 * sin).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rotary_kernel(
    positions_ptr,
    q_ptr,
    k_ptr,
    cos_sin_ptr,
    q_out_ptr,
    k_out_ptr,
    num_tokens,
    num_q_heads,
    num_kv_heads,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_qot,
    stride_qoh,
    stride_kot,
    stride_koh,
    stride_cos_sin,
    HALF: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HKV: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    token_ok = tokens < num_tokens
    tokens = tokens.to(tl.int64)
    dims = tl.arange(0, BLOCK_D)
    positions = tl.load(positions_ptr + tokens, mask=token_ok, other=0).to(tl.int64)
    row = cos_sin_ptr + positions[:, None] * stride_cos_sin + dims[None, :]
    cs_mask = token_ok[:, None] & (dims < HALF)[None, :]
    # one cos/sin load per token serves every query and key head
    cos = tl.load(row, mask=cs_mask, other=0.0)[:, None, :]
    sin = tl.load(row + HALF, mask=cs_mask, other=0.0)[:, None, :]
    _rotate_heads(
        q_ptr,
        q_out_ptr,
        tokens,
        token_ok,
        cos,
        sin,
        num_q_heads,
        stride_qt,
        stride_qh,
        stride_qot,
        stride_qoh,
        HALF,
        BLOCK_HQ,
        BLOCK_D,
    )
    _rotate_heads(
        k_ptr,
        k_out_ptr,
        tokens,
        token_ok,
        cos,
        sin,
        num_kv_heads,
        stride_kt,
        stride_kh,
        stride_kot,
        stride_koh,
        HALF,
        BLOCK_HKV,
        BLOCK_D,
    )


def rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_sin_cache: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    num_tokens, num_q_heads, head_dim = query.shape
    num_kv_heads = key.shape[1]
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
    if query.stride(-1) != 1:
        query = query.contiguous()
    if key.stride(-1) != 1:
        key = key.contiguous()
    cos_sin_cache = cos_sin_cache.contiguous()
    q_out = torch.empty(query.shape, dtype=query.dtype, device=query.device)
    k_out = torch.empty(key.shape, dtype=key.dtype, device=key.device)
    block_d = triton.next_power_of_2(head_dim // 2)
    block_hq = triton.next_power_of_2(num_q_heads)
    block_t = 1
    if interpreting():
        block_t = min(max(1, 8192 // (block_hq * block_d)), triton.next_power_of_2(max(num_tokens, 1)))
    num_warps = max(1, min(block_t * block_hq * block_d // 256, 8))
    _rotary_kernel[(triton.cdiv(num_tokens, block_t),)](
        positions,
        query,
        key,
        cos_sin_cache,
        q_out,
        k_out,
        num_tokens,
        num_q_heads,
        num_kv_heads,
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        q_out.stride(0),
        q_out.stride(1),
        k_out.stride(0),
        k_out.stride(1),
        cos_sin_cache.stride(0),
        HALF=head_dim // 2,
        BLOCK_T=block_t,
        BLOCK_HQ=block_hq,
        BLOCK_HKV=triton.next_power_of_2(num_kv_heads),
        BLOCK_D=block_d,
        num_warps=num_warps,
    )
    return q_out, k_out
