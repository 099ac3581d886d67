"""Fused mixture-of-experts MLP (twin: `kernels.reference.fused_moe`).

Each token chose K experts; its K (token, choice) pairs are numbered t * K + k. `align_by_expert`
sorts the pairs by expert and pads each expert's run to a multiple of BLOCK_M, so that every
block of BLOCK_M sorted pairs belongs to one expert. Two grouped GEMMs then cover all experts in
one launch each, a program per (block of pairs, block of output columns), reading that block's
expert's weight:
- gate/up: the pair's token row of x times both halves of gate_up[e], SiLU(gate) * up applied to
  the two float32 accumulators, written as the pair's row of the intermediate [T*K, I];
- down: the pair's intermediate row times down[e], scaled by the pair's routing weight, written
  as the pair's float32 row of [T*K, H].
The K rows of each token are then summed. No step reads a device value on the host, as capture
in a CUDA graph requires: buffers are sized by a bound from the shapes, and the blocks past the
padded length in use return at once.
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.util import grouped_tile, interpreting


@dataclass(frozen=True)
class Config:
    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int


def default_config(pairs: int, num_experts: int) -> Config:
    """Launch configuration for `pairs` (token, choice) pairs over `num_experts` experts."""
    if interpreting():  # few programs with big blocks: each costs Python time
        return Config(block_m=16, block_n=64, block_k=64, group_m=1, num_warps=4, num_stages=1)
    if pairs <= 16 * num_experts:
        # a few pairs per expert (decode): the weights dominate; the smallest tensor-core M
        return Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)
    return Config(block_m=64, block_n=128, block_k=64, group_m=8, num_warps=8, num_stages=3)


def align_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (token, choice) pairs sorted by expert, each expert's run padded to a multiple of
    `block_m`: (sorted pair numbers, int32, padded with T*K; the expert of each block of
    `block_m`, int32; the padded length in use, int32 [1]). Buffers are sized for the worst case,
    the blocks past the padded length are unused."""
    flat = topk_ids.flatten().long()
    pairs = flat.numel()
    # every expert may waste block_m - 1 slots, but no more than pairs experts are used
    bound = pairs + num_experts * (block_m - 1) if pairs >= num_experts else pairs * block_m
    size = triton.cdiv(bound, block_m) * block_m
    counts = torch.zeros(num_experts, dtype=torch.long, device=flat.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    ends = padded.cumsum(0)
    order = flat.argsort(stable=True)
    experts = flat[order]
    # a pair's place in its expert's run, from where the run starts in `order`
    rank = torch.arange(pairs, device=flat.device) - (counts.cumsum(0) - counts)[experts]
    sorted_ids = torch.full((size,), pairs, dtype=torch.int32, device=flat.device)
    sorted_ids[ends[experts] - padded[experts] + rank] = order.to(torch.int32)
    block_starts = torch.arange(0, size, block_m, device=flat.device)
    block_experts = torch.searchsorted(ends, block_starts, right=True).clamp_(max=num_experts - 1)
    return sorted_ids, block_experts.to(torch.int32), ends[-1:].to(torch.int32)


@triton.jit
def _moe_gemm_kernel(
    a_ptr,
    b_ptr,
    out_ptr,
    weights_ptr,
    sorted_ids_ptr,
    block_experts_ptr,
    num_padded_ptr,
    num_pairs,
    N,
    K,
    stride_am,
    stride_be,
    stride_bn,
    stride_om,
    ROWS_PER_A: tl.constexpr,
    GATED: tl.constexpr,
    ROUTED_WEIGHT: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """out[pair] = a[pair // ROWS_PER_A] @ b[expert].T over the blocks of sorted pairs. GATED: b
    holds 2N rows [gate | up] and out gets SiLU(gate) * up; ROUTED_WEIGHT: out is scaled by the
    pair's routing weight."""
    tiles_n = tl.cdiv(N, BLOCK_N)
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.num_programs(0) // tiles_n, tiles_n, GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    ids = tl.load(sorted_ids_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    mask_m = ids < num_pairs
    expert = tl.load(block_experts_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + (ids // ROWS_PER_A).to(tl.int64)[:, None] * stride_am
    b_cols = b_ptr + expert * stride_be + offs_n.to(tl.int64)[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if GATED:
        up_acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        mask_k = ks < K
        a = tl.load(a_rows + ks[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(b_cols + ks[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if IEEE:
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
        if GATED:
            up = tl.load(b_cols + N * stride_bn + ks[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            if UPCAST:
                up = up.to(tl.float32)
            if IEEE:
                up_acc = tl.dot(a, up, up_acc, input_precision="ieee")
            else:
                up_acc = tl.dot(a, up, up_acc)
    if GATED:
        acc = acc / (1.0 + tl.exp(-acc)) * up_acc
    if ROUTED_WEIGHT:
        acc *= tl.load(weights_ptr + ids, mask=mask_m, other=0.0)[:, None]
    o = out_ptr + ids.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
    tl.store(o, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _grouped_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    weights: torch.Tensor,
    aligned: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    rows_per_a: int,
    gated: bool,
    cfg: Config,
) -> None:
    sorted_ids, block_experts, num_padded = aligned
    n, k = out.shape[1], a.shape[1]
    grid = (block_experts.numel() * triton.cdiv(n, cfg.block_n),)
    _moe_gemm_kernel[grid](
        a, b, out, weights, sorted_ids, block_experts, num_padded,
        weights.numel(), n, k, a.stride(0), b.stride(0), b.stride(1), out.stride(0),
        ROWS_PER_A=rows_per_a, GATED=gated, ROUTED_WEIGHT=not gated,
        UPCAST=interpreting(), IEEE=a.dtype == torch.float32,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip


def fused_moe(
    x: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    config: Config | None = None,
) -> torch.Tensor:
    tokens, hidden = x.shape
    num_experts, inter = gate_up.shape[0], gate_up.shape[1] // 2
    if gate_up.shape != (num_experts, 2 * inter, hidden) or down.shape != (num_experts, hidden, inter):
        raise ValueError(f"expert weights {tuple(gate_up.shape)} and {tuple(down.shape)} do not fit x {tuple(x.shape)}")
    if topk_ids.shape != topk_weights.shape or topk_ids.shape[0] != tokens:
        raise ValueError(f"routing {tuple(topk_ids.shape)} / {tuple(topk_weights.shape)} does not fit {tokens} tokens")
    x, gate_up, down = x.contiguous(), gate_up.contiguous(), down.contiguous()
    top_k = topk_ids.shape[1]
    cfg = config or default_config(tokens * top_k, num_experts)
    aligned = align_by_expert(topk_ids, num_experts, cfg.block_m)
    weights = topk_weights.float().contiguous()
    act = torch.empty((tokens * top_k, inter), dtype=x.dtype, device=x.device)
    _grouped_gemm(x, gate_up, act, weights, aligned, top_k, True, cfg)
    out = torch.empty((tokens * top_k, hidden), dtype=torch.float32, device=x.device)
    _grouped_gemm(act, down, out, weights, aligned, 1, False, cfg)
    return out.view(tokens, top_k, hidden).sum(dim=1).to(x.dtype)
