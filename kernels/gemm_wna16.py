"""W4A16 / W8A16 dequant-GEMM: x @ W.T with W packed int (twin: `kernels.reference.wna16_gemm`).

The weight stays in compressed-tensors' layout: int32 words [N, K * bits / 32], 32 / bits codes per
word along K (low bits first, offset by 2**(bits-1)), group scales [N, K / G], optional signed
zero points [N, K / G]. A K tile never crosses a group, so a group's scale is applied to the
tile's product. Four paths, chosen by the number of rows of x (`default_config`):
- strided (up to 16 rows, groups of 128 int4 and up): tensor cores; the j-th code of every word in
  a tile multiplies the strided slice x[:, j::32/bits], so codes need one shift and mask each
  and no reordering;
- interleaved (smaller groups, whose tiles are too few words for the tensor cores' K step):
  the tile of words is widened with interleaves into K order and the codes shifted out;
- gemv (a few rows): the interleaved kernel with plain multiply-adds instead of tensor cores.
  With so few rows every code is used a few times, so the work is turning codes into scaled
  floats: a shift, a bit operation and one FMA per code (no int-to-float conversion, which
  runs at an eighth of the FMA rate);
- dequant (more rows): the weight is expanded into x's dtype by a small kernel and multiplied by
  cuBLAS. Past a few dozen rows the product is no longer bound by reading the weight, and the
  fused kernels, which dequantize every tile once per block of rows, fall far behind (0.08x of
  bf16 at 64 rows on the H100, bench/RESULTS.md); expanding costs one extra pass over a
  bf16-sized weight.
Small batches read the weight once with few output tiles, so K is split across programs
(split-K) and a second small kernel sums the partial products.
"""

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.util import interpreting


@triton.jit
def _wna16_kernel(
    x_ptr,
    w_ptr,
    s_ptr,
    z_ptr,
    out_ptr,
    M,
    N,
    K,
    k_per_split,
    group_size,
    stride_xm,
    stride_wn,
    stride_sn,
    stride_zn,
    stride_om,
    stride_split,
    BITS: tl.constexpr,
    HAS_ZP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
    PATH: tl.constexpr,
):
    # A program owns a [BLOCK_M, BLOCK_N] tile of the output over its split of K; the fused
    # paths (PATH: "strided", "interleaved" or "gemv") differ only in how they multiply a K tile.
    PACK: tl.constexpr = 32 // BITS
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    offs_w = tl.arange(0, BLOCK_K // PACK)
    n_words = K // PACK
    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
    k_start = pid_k * k_per_split
    k_end = tl.minimum(K, k_start + k_per_split)
    if PATH == "strided":
        # Code j of each word holds input column PACK * word + j, so the tile's product is PACK
        # products of a strided slice of x with the j-th codes of the words: no unpacking into K
        # order. The offset 2**(bits-1) (and a zero point) is taken off once per tile through the
        # sum of x: x . (q - o) = x . q - o * sum(x).
        w_cols = w_ptr + offs_n.to(tl.int64)[None, :] * stride_wn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(k_start, k_end, BLOCK_K):
            words = k0 // PACK + offs_w
            p = tl.load(w_cols + words[:, None], mask=(words < n_words)[:, None] & mask_n[None, :], other=0)
            part = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            xsum = tl.zeros((BLOCK_M,), dtype=tl.float32)
            for j in tl.static_range(PACK):
                ks = k0 + offs_w * PACK + j
                x = tl.load(x_rows + ks[None, :], mask=mask_m[:, None] & (ks < K)[None, :], other=0.0)
                q = (p >> (BITS * j)) & ((1 << BITS) - 1)
                if UPCAST:
                    x = x.to(tl.float32)
                xsum += tl.sum(x.to(tl.float32), axis=1)
                if IEEE:
                    part = tl.dot(x, q.to(x.dtype), part, input_precision="ieee")
                else:
                    part = tl.dot(x, q.to(x.dtype), part)
            g = k0 // group_size
            if HAS_ZP:
                z = tl.load(z_ptr + offs_n * stride_zn + g, mask=mask_n, other=0).to(tl.float32)
                part -= xsum[:, None] * ((1 << (BITS - 1)) + z[None, :])
            else:
                part -= xsum[:, None] * (1 << (BITS - 1))
            s = tl.load(s_ptr + offs_n * stride_sn + g, mask=mask_n, other=0.0).to(tl.float32)
            acc += part * s[None, :]
    else:
        # The tile of words is widened into K order, so x is read in order. Without tensor cores
        # (gemv), products go into a [rows, outputs, K] block of accumulators that is reduced
        # once, at the end: a reduction per tile would cost more shuffles than the multiply-adds.
        # The group scale then has to be in the weight, which costs one FMA: the code q is moved
        # into the top mantissa bits of 1.0, giving v = 1 + q / 2**BITS exactly (no int-to-float
        # conversion), and (q - o - z) * s = v * (2**BITS * s) - (2**BITS + o + z) * s, both
        # products exact for bf16 scales, so the weight is rounded once, as the reference's is.
        TENSOR_CORES: tl.constexpr = PATH == "interleaved"
        LOG2_PACK: tl.constexpr = 3 if BITS == 4 else 2
        TOP: tl.constexpr = 23 - BITS  # the code's place in the mantissa
        offs_k = tl.arange(0, BLOCK_K)
        shifts = (offs_k % PACK) * BITS
        w_rows = w_ptr + offs_n.to(tl.int64)[:, None] * stride_wn
        if TENSOR_CORES:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        else:
            acc3 = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_K), dtype=tl.float32)
        for k0 in range(k_start, k_end, BLOCK_K):
            ks = k0 + offs_k
            x = tl.load(x_rows + ks[None, :], mask=mask_m[:, None] & (ks < K)[None, :], other=0.0)
            words = k0 // PACK + offs_w
            p = tl.load(w_rows + words[None, :], mask=mask_n[:, None] & (words < n_words)[None, :], other=0)
            for _ in tl.static_range(LOG2_PACK):
                p = tl.interleave(p, p)  # column c now holds word c // PACK
            g = k0 // group_size
            s = tl.load(s_ptr + offs_n * stride_sn + g, mask=mask_n, other=0.0).to(tl.float32)
            if HAS_ZP:
                z = tl.load(z_ptr + offs_n * stride_zn + g, mask=mask_n, other=0).to(tl.int32)
            if TENSOR_CORES:
                codes = (p >> shifts[None, :]) & ((1 << BITS) - 1)
                if HAS_ZP:
                    w = codes - ((1 << (BITS - 1)) + z[:, None])
                else:
                    w = codes - (1 << (BITS - 1))
                if UPCAST:
                    x = x.to(tl.float32)
                    w = w.to(tl.float32)
                else:
                    w = w.to(x.dtype)
                if IEEE:
                    part = tl.dot(x, tl.trans(w), input_precision="ieee")
                else:
                    part = tl.dot(x, tl.trans(w))
                acc += part * s[None, :]
            else:
                u = (p.to(tl.uint32, bitcast=True) >> shifts[None, :]) << TOP
                v = ((u & (((1 << BITS) - 1) << TOP)) | 0x3F800000).to(tl.float32, bitcast=True)
                offset = (1 << BITS) + (1 << (BITS - 1))
                if HAS_ZP:
                    c = s * (offset + z).to(tl.float32)
                else:
                    c = s * offset
                w = v * (s * (1 << BITS))[:, None] - c[:, None]
                acc3 += x.to(tl.float32)[:, None, :] * w[None, :, :]
        if not TENSOR_CORES:
            acc = tl.sum(acc3, axis=2)
    out = out_ptr + pid_k * stride_split + offs_m.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _dequantize_kernel(
    w_ptr,
    s_ptr,
    z_ptr,
    out_ptr,
    N,
    K,
    group_size,
    stride_wn,
    stride_sn,
    stride_zn,
    stride_on,
    BITS: tl.constexpr,
    HAS_ZP: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Each word is gathered once per code it holds; the repeats hit the L1 cache.
    PACK: tl.constexpr = 32 // BITS
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (offs_n < N)[:, None] & (offs_k < K)[None, :]
    rows = offs_n.to(tl.int64)[:, None]
    p = tl.load(w_ptr + rows * stride_wn + (offs_k // PACK)[None, :], mask=mask, other=0)
    q = ((p >> ((offs_k % PACK) * BITS)[None, :]) & ((1 << BITS) - 1)) - (1 << (BITS - 1))
    g = (offs_k // group_size)[None, :]
    if HAS_ZP:
        q -= tl.load(z_ptr + rows * stride_zn + g, mask=mask, other=0).to(tl.int32)
    s = tl.load(s_ptr + rows * stride_sn + g, mask=mask, other=0.0).to(tl.float32)
    w = q.to(tl.float32) * s
    tl.store(out_ptr + rows * stride_on + offs_k[None, :], w.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sum_splits_kernel(part_ptr, out_ptr, numel, split, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in range(split):
        acc += tl.load(part_ptr + s * numel + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


GEMV_MAX_M = 4  # rows of x up to which the multiply-add kernel runs
FUSED_MAX_M = 16  # and the tensor-core kernels; past it, dequantize and cuBLAS


@dataclass(frozen=True)
class Config:
    kernel: str  # "gemv", "strided", "interleaved" or "dequant"
    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 4


@functools.cache
def num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def split_for(
    m: int, n: int, k: int, block_m: int, block_n: int, block_k: int, device: torch.device,
    programs_per_sm: int = 2, min_k_tiles: int = 4,
) -> int:  # fmt: skip
    """Enough programs for `programs_per_sm` over the SMs, each keeping `min_k_tiles` K tiles."""
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    wanted = triton.cdiv(programs_per_sm * num_sms(device.index or 0), tiles)
    return max(1, min(triton.cdiv(k, block_k) // min_k_tiles, wanted))


def default_config(m: int, n: int, k: int, group_size: int, bits: int, device: torch.device) -> Config:
    """The path and launch shape for m rows. Tensor-core shapes are from the H100 sweep in
    bench/quant_gemm.py (bench/RESULTS.md); the strided kernel needs K tiles of 16 words (the
    tensor cores' K step): groups of 128 int4. The gemv shape and the row limits of the paths
    are not measured yet; they come from sm_90 code compiled here (see RESULTS): tiles of 64 K
    keep the gemv kernel's accumulators under 128 registers (several programs per SM, to keep
    weight reads in flight) at about 8 instructions per weight for one row and 13 for four."""
    if m > FUSED_MAX_M:
        return Config("dequant", 1, 64, 128)
    if m <= GEMV_MAX_M:
        block_m, block_k = triton.next_power_of_2(m), min(64, group_size)
        block_n = 64 if block_m <= 2 else 32
        if interpreting():
            return Config("gemv", block_m, block_n, block_k, 1, 4, 1)
        split = split_for(m, n, k, block_m, block_n, block_k, device, programs_per_sm=8, min_k_tiles=2)
        return Config("gemv", block_m, block_n, block_k, split, 4, 3)
    block_k = min(128, group_size)
    kernel = "strided" if block_k * bits // 32 >= 16 else "interleaved"
    if interpreting():
        return Config(kernel, 16, 64, block_k, 1, 4, 1)
    return Config(kernel, 16, 128, block_k, split_for(m, n, k, 16, 128, block_k, device), 4, 4)


def kernel_for(cfg: Config) -> tuple[triton.runtime.JITFunction, dict]:
    """The Triton kernel of a fused path and the constexprs that pick its variant."""
    if cfg.kernel in ("strided", "interleaved", "gemv"):
        return _wna16_kernel, {"PATH": cfg.kernel}
    raise ValueError(f"{cfg.kernel!r} is not a fused W4A16 kernel (gemv, strided, interleaved)")


def dequantize(
    packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, group_size: int, dtype: torch.dtype
) -> torch.Tensor:
    """The weight [N, K] in `dtype` (twin: `kernels.reference.dequantize_packed`, in float32)."""
    n, k = packed.shape[0], packed.shape[1] * (32 // bits)
    out = torch.empty((n, k), dtype=dtype, device=packed.device)
    block_n, block_k = 32, 256
    _dequantize_kernel[(triton.cdiv(n, block_n), triton.cdiv(k, block_k))](
        packed, scale, zero if zero is not None else scale, out,
        n, k, group_size,
        packed.stride(0), scale.stride(0), zero.stride(0) if zero is not None else 0, out.stride(0),
        BITS=bits, HAS_ZP=zero is not None, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    return out


def wna16_gemm(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor | None,
    bits: int,
    group_size: int,
    config: Config | None = None,
) -> torch.Tensor:
    if bits not in (4, 8):
        raise ValueError(f"{bits}-bit packed weights are not supported (4, 8)")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m, k = x2.shape
    n = packed.shape[0]
    if packed.shape[1] * (32 // bits) != k:
        raise ValueError(f"packed weight {tuple(packed.shape)} does not hold {k} {bits}-bit columns")
    cfg = config or default_config(m, n, k, group_size, bits, x.device)
    if cfg.kernel == "dequant":
        return torch.nn.functional.linear(x2, dequantize(packed, scale, zero, bits, group_size, x.dtype)).view(*lead, n)
    if group_size < k and group_size % cfg.block_k:
        raise ValueError(f"group size {group_size} is not a multiple of BLOCK_K {cfg.block_k}")
    k_tiles = triton.cdiv(k, cfg.block_k)
    split = min(cfg.split_k, k_tiles)
    k_per_split = triton.cdiv(k_tiles, split) * cfg.block_k
    split = triton.cdiv(k, k_per_split)
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    dest = out if split == 1 else torch.empty((split, m, n), dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(m, cfg.block_m), triton.cdiv(n, cfg.block_n), split)
    kernel, extra = kernel_for(cfg)
    kernel[grid](
        x2, packed, scale, zero if zero is not None else scale, dest,
        m, n, k, k_per_split, group_size,
        x2.stride(0), packed.stride(0), scale.stride(0), zero.stride(0) if zero is not None else 0,
        n, m * n,
        BITS=bits, HAS_ZP=zero is not None,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        UPCAST=interpreting(), IEEE=x.dtype == torch.float32,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **extra,
    )  # fmt: skip
    if split > 1:
        block = 1024
        _sum_splits_kernel[(triton.cdiv(m * n, block),)](dest, out, m * n, split, BLOCK=block)
    return out.view(*lead, n)
