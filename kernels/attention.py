"""Paged attention over the block table (twin: `kernels.reference.paged_attention`).

One kernel serves decode, prefill and prefill chunks over a cached prefix:
- Q-blocks: a program owns one KV head and BLOCK_M rows = BLOCK_Q query tokens x the GROUP
  query heads sharing that KV head, so each K/V tile is loaded once for the whole group and
  even a 1-token decode fills the M dimension of `tl.dot`.
- Static grid: `T // BLOCK_Q + B` programs along axis 0 bound the Q-blocks of any batch of B
  sequences and T tokens; each program finds its sequence by binary search over
  `query_start_loc`, so the launch depends on shapes alone and a CUDA graph can replay it.
- Split-K (flash-decoding): with few programs the grid gets a third axis of KV segments whose
  partial (accumulator, max, sum) go to scratch and a second kernel merges them.
- Sliding window: a query sees only the last `window` positions (its own included); a program
  starts at the first KV tile its Q-block's window reaches and never loads the tiles before it.
- Soft-capping (Gemma 2): scores become `softcap * tanh(score / softcap)` before the softmax.
- FP8 cache: K and V tiles load as FP8 codes and widen exactly to the query's dtype; k_scale
  joins the score scale and v_scale multiplies the output accumulator, both in fp32.
Online softmax in fp32, base 2, with the scale folded into the exponent.
"""

import functools
import math

import torch
import triton
import triton.language as tl

from kernels.cache import cache_strides
from kernels.util import interpreting

# Split-K is used while the plain grid has fewer busy programs than SPLIT_BELOW_WAVES per
# multiprocessor; segments are then added until there are about TARGET_WAVES per
# multiprocessor. A segment covers at least MIN_SEGMENT_KEYS keys, so short contexts use few
# of the segments and the empty ones cost a program that writes two floats per row.
# Measured on an H100 against fixed segment counts in bench/RESULTS.md.
SPLIT_BELOW_WAVES = 2.0
TARGET_WAVES = 4
MAX_SEGMENTS = 32
MIN_SEGMENT_KEYS = 256


@triton.jit
def _find_sequence(query_start_loc_ptr, q_block_id, num_seqs, BLOCK_Q: tl.constexpr):
    # sequence b owns programs [qsl[b] // BLOCK_Q + b, qsl[b + 1] // BLOCK_Q + b + 1)
    lo = 0
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        first = tl.load(query_start_loc_ptr + mid) // BLOCK_Q + mid
        if first <= q_block_id:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@triton.jit
def _tanh(x):
    # from exp2, which the interpreter has (tanh is a libdevice call); exp2 of a non-positive
    # argument cannot overflow
    e = tl.math.exp2(-2.0 * 1.4426950408889634 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def _load_cache_tile(
    cache_ptr, blocks, slots, kv_head, dims, mask, stride_block, stride_slot, stride_head, UPCAST: tl.constexpr
):
    """One KV head's [keys, dims] tile of a paged K or V cache, keys given by block and slot."""
    tile = tl.load(
        cache_ptr + (blocks * stride_block + slots * stride_slot + kv_head * stride_head)[:, None] + dims[None, :],
        mask=mask,
        other=0.0,
    )
    if UPCAST:
        tile = tile.to(tl.float32)
    return tile


@triton.jit
def _paged_attention_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    out_ptr,
    seg_acc_ptr,
    seg_max_ptr,
    seg_sum_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    query_start_loc_ptr,
    qk_scale,
    v_scale,
    softcap_log2,
    window,
    num_seqs,
    num_q_heads,
    stride_qt,
    stride_qh,
    stride_ot,
    stride_oh,
    stride_k_block,
    stride_k_slot,
    stride_k_head,
    stride_v_block,
    stride_v_slot,
    stride_v_head,
    stride_bt,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_P: tl.constexpr,
    GROUP: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    TILE_N: tl.constexpr,
    NUM_SEGMENTS: tl.constexpr,
    MIN_SEGMENT_TILES: tl.constexpr,
    SLIDING: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FP8_KV: tl.constexpr,
    UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    q_block_id = tl.program_id(0)
    kv_head = tl.program_id(1)
    segment = tl.program_id(2)

    seq = _find_sequence(query_start_loc_ptr, q_block_id, num_seqs, BLOCK_Q)
    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    q_block = q_block_id - (q_start // BLOCK_Q + seq)
    if q_block * BLOCK_Q >= q_len:
        return
    ctx_len = tl.load(seq_lens_ptr + seq)

    rows = tl.arange(0, BLOCK_M)
    q_tok = q_block * BLOCK_Q + rows // GROUP
    heads = kv_head * GROUP + rows % GROUP
    row_ok = (rows < BLOCK_Q * GROUP) & (q_tok < q_len)
    q_pos = ctx_len - q_len + q_tok
    tokens = (q_start + q_tok).to(tl.int64)
    dims = tl.arange(0, HEAD_DIM_P)
    dim_ok = dims < HEAD_DIM

    q = tl.load(
        q_ptr + tokens[:, None] * stride_qt + heads[:, None] * stride_qh + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)

    # keys up to the block's last query position; causal masking trims the earlier rows
    last_tok = tl.minimum(q_block * BLOCK_Q + BLOCK_Q, q_len) - 1
    num_keys = ctx_len - q_len + last_tok + 1
    num_tiles = tl.cdiv(num_keys, TILE_N)
    # and from the first key the block's first query position still sees through its window
    first_tile = 0
    if SLIDING:
        first_tile = tl.maximum(ctx_len - q_len + q_block * BLOCK_Q - window + 1, 0) // TILE_N
    if NUM_SEGMENTS == 1:
        tile_lo = first_tile
        tile_hi = num_tiles
    else:
        per_segment = tl.maximum(tl.cdiv(num_tiles - first_tile, NUM_SEGMENTS), MIN_SEGMENT_TILES)
        tile_lo = first_tile + segment * per_segment
        tile_hi = tl.minimum(tile_lo + per_segment, num_tiles)

    # a finite floor keeps fully masked rows (and empty segments) free of inf - inf
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_P], dtype=tl.float32)
    block_table = block_tables_ptr + seq.to(tl.int64) * stride_bt
    for tile in range(tile_lo, tile_hi):
        keys = tile * TILE_N + tl.arange(0, TILE_N)
        key_ok = keys < num_keys
        blocks = tl.load(block_table + keys // BLOCK_SIZE, mask=key_ok, other=0).to(tl.int64)
        slots = keys % BLOCK_SIZE
        load_mask = key_ok[:, None] & dim_ok[None, :]
        k = _load_cache_tile(
            k_cache_ptr, blocks, slots, kv_head, dims, load_mask, stride_k_block, stride_k_slot, stride_k_head, UPCAST
        )
        v = _load_cache_tile(
            v_cache_ptr, blocks, slots, kv_head, dims, load_mask, stride_v_block, stride_v_slot, stride_v_head, UPCAST
        )
        if FP8_KV:  # every FP8 E4M3 value is exact in fp16, bf16 and fp32
            k = k.to(q.dtype)
            v = v.to(q.dtype)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        if SOFTCAP:
            s = _tanh(s) * softcap_log2
        visible = keys[None, :] <= q_pos[:, None]
        if SLIDING:
            visible = visible & (keys[None, :] > q_pos[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new
    if FP8_KV:
        acc = acc * v_scale

    if NUM_SEGMENTS == 1:
        result = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
        tl.store(
            out_ptr + tokens[:, None] * stride_ot + heads[:, None] * stride_oh + dims[None, :],
            result.to(out_ptr.dtype.element_ty),
            mask=row_ok[:, None] & dim_ok[None, :],
        )
    else:
        seg_row = (tokens * num_q_heads + heads) * NUM_SEGMENTS + segment
        tl.store(seg_max_ptr + seg_row, m_i, mask=row_ok)
        tl.store(seg_sum_ptr + seg_row, l_i, mask=row_ok)
        # an empty segment's accumulator stays unwritten: the merge skips rows whose sum is 0
        acc_ok = row_ok & (tile_hi > tile_lo)
        tl.store(seg_acc_ptr + seg_row[:, None] * HEAD_DIM_P + dims[None, :], acc, mask=acc_ok[:, None])


@triton.jit
def _reduce_segments_kernel(
    out_ptr,
    seg_acc_ptr,
    seg_max_ptr,
    seg_sum_ptr,
    query_start_loc_ptr,
    num_seqs,
    num_q_heads,
    stride_ot,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_P: tl.constexpr,
    NUM_SEGMENTS: tl.constexpr,
):
    token = tl.program_id(0)
    head = tl.program_id(1)
    # padding tokens past the last sequence were never attended: leave their rows alone
    if token >= tl.load(query_start_loc_ptr + num_seqs):
        return
    segments = tl.arange(0, NUM_SEGMENTS)
    dims = tl.arange(0, HEAD_DIM_P)
    seg_row = (token.to(tl.int64) * num_q_heads + head) * NUM_SEGMENTS + segments
    seg_max = tl.load(seg_max_ptr + seg_row)
    weights = tl.math.exp2(seg_max - tl.max(seg_max, axis=0))
    seg_sum = tl.load(seg_sum_ptr + seg_row)
    total = tl.sum(seg_sum * weights, axis=0)
    acc = tl.load(seg_acc_ptr + seg_row[:, None] * HEAD_DIM_P + dims[None, :], mask=(seg_sum > 0.0)[:, None], other=0.0)
    result = tl.sum(acc * weights[:, None], axis=0) / tl.where(total > 0.0, total, 1.0)
    tl.store(
        out_ptr + token.to(tl.int64) * stride_ot + head * stride_oh + dims,
        result.to(out_ptr.dtype.element_ty),
        mask=dims < HEAD_DIM,
    )


@functools.lru_cache
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _segments_for(programs: int, device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    sms = _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())
    if programs >= SPLIT_BELOW_WAVES * sms:
        return 1
    return min(MAX_SEGMENTS, triton.next_power_of_2(triton.cdiv(TARGET_WAVES * sms, programs)))


def paged_attention(
    query: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
    *,
    window: int | None = None,
    softcap: float | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    num_segments: int | None = None,
    block_m: int | None = None,
    tile_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    min_segment_keys: int | None = None,
) -> torch.Tensor:
    """`window`, `softcap`, `k_scale` and `v_scale` as the twin takes them; the other keyword-only
    arguments override the launch heuristics (tests and benchmarks)."""
    num_tokens, num_q_heads, head_dim = query.shape
    block_size, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    if num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads do not group over {num_kv_heads} KV heads")
    strides = cache_strides(k_cache, v_cache)
    if query.stride(-1) != 1:
        query = query.contiguous()
    if out is None:
        out = torch.empty(query.shape, dtype=query.dtype, device=query.device)
    num_seqs = seq_lens.shape[0]
    group = num_q_heads // num_kv_heads
    interpret = interpreting()
    fp8_kv = k_cache.dtype == torch.float8_e4m3fn
    if fp8_kv != (v_cache.dtype == torch.float8_e4m3fn):
        raise ValueError(f"the K cache is {k_cache.dtype} but the V cache {v_cache.dtype}")
    if fp8_kv:
        scale *= k_scale

    if block_m is None:
        # decode wants the smallest M tile that holds a group; long query runs want bigger
        # tiles so each K/V tile serves more query tokens (64 rows over 32-key tiles beat
        # 128 x 64 by 18% on an H100 for 8 x 512-token prefills: bench/RESULTS.md)
        tokens_per_seq = triton.cdiv(num_tokens, max(num_seqs, 1))
        block_m = min(max(triton.next_power_of_2(group * tokens_per_seq), 16), 64)
        block_m = max(block_m, triton.next_power_of_2(group))
    if block_m < group:
        raise ValueError(f"block_m {block_m} cannot hold a group of {group} query heads")
    block_q = block_m // group
    wide = (
        query.element_size() > 2
    )  # fp32 tiles (FP8 ones widen to the query's dtype): keep K/V stages within shared memory
    if tile_n is None:
        tile_n = 64 if interpret else 32 if wide or block_m >= 64 else 64
    q_programs = num_tokens // block_q + num_seqs
    if num_segments is None:
        # programs with work: one per Q-block and KV head (the rest of the grid exits at once)
        busy = max(num_tokens // block_q, num_seqs) * num_kv_heads
        num_segments = 1 if interpret else _segments_for(busy, query.device)
    if num_warps is None:
        num_warps = 8 if block_m >= 128 else 4
    if num_stages is None:
        num_stages = 2 if wide and block_m >= 64 else 3

    if num_segments & (num_segments - 1):
        raise ValueError(f"num_segments must be a power of two, got {num_segments}")
    head_dim_p = max(triton.next_power_of_2(head_dim), 16)
    if num_segments > 1:
        seg_acc = torch.empty(
            (num_tokens, num_q_heads, num_segments, head_dim_p), dtype=torch.float32, device=query.device
        )
        seg_max = torch.empty((num_tokens, num_q_heads, num_segments), dtype=torch.float32, device=query.device)
        seg_sum = torch.empty_like(seg_max)
    else:
        seg_acc = seg_max = seg_sum = out  # unused
    if num_tokens == 0:
        return out

    _paged_attention_kernel[(q_programs, num_kv_heads, num_segments)](
        query,
        k_cache,
        v_cache,
        out,
        seg_acc,
        seg_max,
        seg_sum,
        block_tables,
        seq_lens,
        query_start_loc,
        # with soft-capping the scale goes inside the tanh and log2(e) onto the cap
        scale * math.log2(math.e) if softcap is None else scale / softcap,
        v_scale,
        0.0 if softcap is None else softcap * math.log2(math.e),
        window or 0,
        num_seqs,
        num_q_heads,
        query.stride(0),
        query.stride(1),
        out.stride(0),
        out.stride(1),
        *strides,
        block_tables.stride(0),
        HEAD_DIM=head_dim,
        HEAD_DIM_P=head_dim_p,
        GROUP=group,
        BLOCK_Q=block_q,
        BLOCK_M=block_m,
        BLOCK_SIZE=block_size,
        TILE_N=tile_n,
        NUM_SEGMENTS=num_segments,
        MIN_SEGMENT_TILES=triton.cdiv(min_segment_keys or MIN_SEGMENT_KEYS, tile_n),
        SLIDING=window is not None,
        SOFTCAP=softcap is not None,
        FP8_KV=fp8_kv,
        UPCAST=interpret,
        DOT_PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
        num_warps=num_warps,
        num_stages=num_stages,
    )
    if num_segments > 1:
        _reduce_segments_kernel[(num_tokens, num_q_heads)](
            out,
            seg_acc,
            seg_max,
            seg_sum,
            query_start_loc,
            num_seqs,
            num_q_heads,
            out.stride(0),
            out.stride(1),
            HEAD_DIM=head_dim,
            HEAD_DIM_P=head_dim_p,
            NUM_SEGMENTS=num_segments,
            num_warps=1 if head_dim_p <= 64 else 2,
        )
    return out
