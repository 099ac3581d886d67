"""W8A8 int8 and FP8 scaled GEMM, and the dynamic per-token activation quantization feeding it
(twins: `kernels.reference.scaled_mm`, `kernels.reference.quantize_per_token`).

`scaled_mm` computes (scale_a * a) @ (scale_b * b).T with the integer (int32) or float32 product
accumulated over K and both scales applied once in the epilogue: per token (row of a) and per
output channel (row of b), or per tensor. The weight keeps the checkpoint's [N, K] layout: K is
contiguous in both operands, which is the K-major order the 8-bit tensor-core instructions want.
`block_scaled_mm` (FP8 block weights, twin `kernels.reference.block_scaled_mm`) has scales that
change along K, a scale per token and group of K on one side, per row and group on the other:
each K tile's product is scaled before it joins the float32 accumulator.
"""

import functools

import torch
import triton
import triton.language as tl

from kernels.gemm_wna16 import num_sms
from kernels.util import grouped_tile, interpreting

HALF_RANGES = {torch.int8: 127.5, torch.float8_e4m3fn: 448.0}
ZERO_ROW_SCALE = torch.finfo(torch.float32).eps
# rows up to this many elements are quantized from registers in one read; longer ones in two
_MAX_ROW_BLOCK = 16384


@triton.jit
def _round_to_e4m3(y):
    """Rounds float32 |y| <= 448 to the nearest FP8 E4M3 value, ties to even. Only for Triton's
    interpreter, whose float32 -> fp8 cast drops the carry when rounding up crosses a power of
    two (31.1 becomes 16); the GPU's conversion rounds correctly."""
    exponent = ((y.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    step = tl.exp2((tl.maximum(exponent, -6) - 3).to(tl.float32))  # 3 mantissa bits; subnormals below 2**-6
    return ((y / step + 12582912.0) - 12582912.0) * step


@triton.jit
def token_scale(amax, HALF_RANGE: tl.constexpr, EPS: tl.constexpr):
    """A row's scale from its max |x|, as the reference computes it; an all-zero row gets EPS."""
    scale = tl.math.div_rn(amax, HALF_RANGE)
    return tl.where(scale == 0.0, EPS, scale)


@triton.jit
def quantize(x, scale, HALF_RANGE: tl.constexpr, IS_FP8: tl.constexpr, INTERPRET: tl.constexpr):
    """float32 rows x [M, K] over their scales [M] to FP8 E4M3 or int8 codes."""
    # div_rn: the default float32 division is approximate on GPUs, and codes must round
    # exactly as the reference's do
    y = tl.math.div_rn(x, scale[:, None])
    if IS_FP8:
        y = tl.clamp(y, -HALF_RANGE, HALF_RANGE)
        if INTERPRET:
            y = _round_to_e4m3(y)
        q = y.to(tl.float8e4nv)
    else:
        # adding and subtracting 1.5 * 2**23 rounds |y| < 2**22 to the nearest even integer
        # (torch.round's rule) without a libdevice call the interpreter lacks
        y = tl.clamp(y, -128.0, 127.0)
        q = ((y + 12582912.0) - 12582912.0).to(tl.int8)
    return q  # one return: the GPU compiler unifies the types of all of them


@triton.jit
def store_quantized(y, like_ptr, q_ptrs, scale_ptrs, mask, row_mask, HALF_RANGE: tl.constexpr, EPS: tl.constexpr,
                    IS_FP8: tl.constexpr, INTERPRET: tl.constexpr):  # fmt: skip
    """Whole float32 rows y [M, N] quantized per token into q_ptrs, their scales [M, 1] into
    scale_ptrs, as the unfused path would: from y rounded to like_ptr's (the activation) dtype."""
    y = y.to(like_ptr.dtype.element_ty).to(tl.float32)
    scale = token_scale(tl.max(tl.abs(y), axis=1), HALF_RANGE, EPS)
    tl.store(scale_ptrs, scale[:, None], mask=row_mask)
    tl.store(q_ptrs, quantize(y, scale, HALF_RANGE, IS_FP8, INTERPRET), mask=mask)


@triton.jit
def _quantize_per_token_kernel(
    x_ptr,
    q_ptr,
    s_ptr,
    M,
    K,
    stride_x,
    stride_q,
    HALF_RANGE: tl.constexpr,
    EPS: tl.constexpr,
    IS_FP8: tl.constexpr,
    INTERPRET: tl.constexpr,
    ONE_PASS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = rows < M
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * stride_x
    q_rows = q_ptr + rows.to(tl.int64)[:, None] * stride_q
    if ONE_PASS:  # the whole row fits in registers: read x once
        ks = tl.arange(0, BLOCK_K)
        x = tl.load(x_rows + ks[None, :], mask=mask_m[:, None] & (ks < K)[None, :], other=0.0).to(tl.float32)
        amax = tl.max(tl.abs(x), axis=1)
    else:
        amax = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_rows + ks[None, :], mask=mask_m[:, None] & (ks < K)[None, :], other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.max(tl.abs(x), axis=1))
    scale = token_scale(amax, HALF_RANGE, EPS)
    tl.store(s_ptr + rows, scale, mask=mask_m)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        mask = mask_m[:, None] & (ks < K)[None, :]
        if not ONE_PASS:
            x = tl.load(x_rows + ks[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(q_rows + ks[None, :], quantize(x, scale, HALF_RANGE, IS_FP8, INTERPRET), mask=mask)


def quant_constants(dtype: torch.dtype | None) -> dict:
    """The constexprs of `quantize` / `store_quantized` for codes of `dtype` (None: a kernel
    launched without quantizing, which gets placeholders)."""
    if dtype is not None and dtype not in HALF_RANGES:
        raise ValueError(f"per-token quantization to {dtype} is not supported (int8, float8_e4m3fn)")
    return dict(HALF_RANGE=HALF_RANGES.get(dtype, 0.0), EPS=ZERO_ROW_SCALE, IS_FP8=dtype == torch.float8_e4m3fn,
                INTERPRET=interpreting())  # fmt: skip


def quantize_per_token(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    constants = quant_constants(dtype)
    x2 = x if x.stride(-1) == 1 else x.contiguous()
    m, k = x2.shape
    q = torch.empty((m, k), dtype=dtype, device=x.device)
    scale = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    block_k = min(triton.next_power_of_2(k), _MAX_ROW_BLOCK)
    block_m = min(max(1, 16384 // block_k), triton.next_power_of_2(max(m, 1))) if interpreting() else 1
    _quantize_per_token_kernel[(triton.cdiv(m, block_m),)](
        x2, q, scale, m, k, x2.stride(0), q.stride(0),
        **constants, ONE_PASS=block_k >= k, BLOCK_M=block_m, BLOCK_K=block_k, num_warps=max(4, min(16, block_k // 1024)),
    )  # fmt: skip
    return q, scale


@triton.jit
def _scaled_mm_kernel(
    a_ptr,
    b_ptr,
    sa_ptr,
    sb_ptr,
    bias_ptr,
    out_ptr,
    M,
    N,
    K,
    stride_am,
    stride_bn,
    stride_om,
    SA_PER_ROW: tl.constexpr,
    SB_PER_ROW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    INT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + offs_m.to(tl.int64)[:, None] * stride_am
    b_cols = b_ptr + offs_n.to(tl.int64)[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32 if INT else tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        mask_k = ks < K
        a = tl.load(a_rows + ks[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(b_cols + ks[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if INT:
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        else:
            acc = tl.dot(a, b, acc)
    out = acc.to(tl.float32)
    if SA_PER_ROW:
        out *= tl.load(sa_ptr + offs_m, mask=mask_m, other=0.0)[:, None]
    else:
        out *= tl.load(sa_ptr)
    if SB_PER_ROW:
        out *= tl.load(sb_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    else:
        out *= tl.load(sb_ptr)
    if HAS_BIAS:
        out += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    o = out_ptr + offs_m.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
    tl.store(o, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _cublas_fp8(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype) -> bool:
    # row-wise scaled FP8 in cuBLAS: FP8 tensor cores (compute capability 8.9+), bf16 output,
    # K and N multiples of 16
    return (
        a.dtype == torch.float8_e4m3fn and out_dtype == torch.bfloat16
        and torch.cuda.get_device_capability(a.device) >= (8, 9)
        and a.shape[1] % 16 == 0 and b.shape[0] % 16 == 0
    )  # fmt: skip


def scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
    block: tuple[int, int, int] | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    cublas: bool = False,
) -> torch.Tensor:
    """The Triton kernel; with `cublas`, `torch._scaled_mm` (cuBLAS) instead for the FP8
    products it runs, which it does faster."""
    if cublas and _cublas_fp8(a, b, out_dtype):
        m, n = a.shape[0], b.shape[0]
        return torch._scaled_mm(
            a, b.t(),
            scale_a=scale_a.float().reshape(-1, 1).expand(m, 1).contiguous(),
            scale_b=scale_b.float().reshape(1, -1).expand(1, n).contiguous(),
            bias=bias, out_dtype=out_dtype,
        )  # fmt: skip
    if a.dtype != b.dtype or a.dtype not in HALF_RANGES:
        raise ValueError(f"scaled_mm takes int8 or float8_e4m3fn operands of one dtype, got {a.dtype} and {b.dtype}")
    m, k = a.shape
    n = b.shape[0]
    if b.shape[1] != k:
        raise ValueError(f"scaled_mm: a {tuple(a.shape)} and b {tuple(b.shape)} disagree on K")
    scale_a = scale_a.float().reshape(-1).contiguous()
    scale_b = scale_b.float().reshape(-1).contiguous()
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    if interpreting():
        bm, bn, bk, stages = max(16, min(64, triton.next_power_of_2(m))), 64, 64, 1
    elif block is not None:
        (bm, bn, bk), stages = block, num_stages or 3
    elif triton.cdiv(m, 128) * triton.cdiv(n, 128) >= num_sms(a.device.index or 0):
        # H100 sweep (bench/RESULTS.md): 128 x 128 tiles once they fill the SMs, 64 x 128 before
        bm, bn, bk, stages = 128, 128, 128, 3
    else:
        bm, bn, bk, stages = 64, 128, 128, 4
    warps = num_warps or (4 if bm * bn <= 64 * 128 else 8)
    grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn),)
    _scaled_mm_kernel[grid](
        a, b, scale_a, scale_b, bias if bias is not None else scale_a, out,
        m, n, k, a.stride(0), b.stride(0), out.stride(0),
        SA_PER_ROW=scale_a.numel() > 1, SB_PER_ROW=scale_b.numel() > 1, HAS_BIAS=bias is not None,
        INT=a.dtype == torch.int8,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8,
        num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return out


@triton.jit
def _block_scaled_mm_kernel(
    a_ptr, b_ptr, sa_ptr, sb_ptr, bias_ptr, out_ptr, M, N, K,
    stride_am, stride_bn, stride_om, stride_sam, stride_sbn,
    GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    # BLOCK_K divides GROUP: each K tile lies in one scale group, so its product is scaled
    # once and added to the float32 accumulator (the scales change along K)
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + offs_m.to(tl.int64)[:, None] * stride_am
    b_cols = b_ptr + offs_n.to(tl.int64)[None, :] * stride_bn
    sa_rows = sa_ptr + offs_m.to(tl.int64) * stride_sam
    sb_cols = sb_ptr + offs_n.to(tl.int64) * stride_sbn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        a = tl.load(a_rows + ks[None, :], mask=mask_m[:, None], other=0.0)
        b = tl.load(b_cols + ks[:, None], mask=mask_n[None, :], other=0.0)
        sa = tl.load(sa_rows + k0 // GROUP, mask=mask_m, other=0.0)
        sb = tl.load(sb_cols + k0 // GROUP, mask=mask_n, other=0.0)
        acc += tl.dot(a, b) * sa[:, None] * sb[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    o = out_ptr + offs_m.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
    tl.store(o, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def block_scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """FP8 GEMM with a float32 scale per token (row of a) and group of K, and per output row of
    b and group of K (an FP8 block weight's scales repeated over its rows)."""
    if a.dtype != torch.float8_e4m3fn or b.dtype != torch.float8_e4m3fn:
        raise ValueError(f"block_scaled_mm takes float8_e4m3fn operands, got {a.dtype} and {b.dtype}")
    m, k = a.shape
    n = b.shape[0]
    group = k // scale_a.shape[1]
    if b.shape[1] != k or scale_b.shape != (n, k // group) or group * scale_a.shape[1] != k or group % 16:
        raise ValueError(
            f"block_scaled_mm: a {tuple(a.shape)}, b {tuple(b.shape)}, scales {tuple(scale_a.shape)} and "
            f"{tuple(scale_b.shape)} do not describe whole groups of a multiple of 16"
        )
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    bk = min(group, 128) if group & (group - 1) == 0 else 16  # a power of two dividing the group
    if interpreting():
        bm, bn, stages = max(16, min(64, triton.next_power_of_2(m))), 64, 1
    else:
        bm, bn, stages = (64 if m > 32 else 16), 128, 4
    grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn),)
    _block_scaled_mm_kernel[grid](
        a, b, scale_a, scale_b, bias if bias is not None else scale_a, out,
        m, n, k, a.stride(0), b.stride(0), out.stride(0), scale_a.stride(0), scale_b.stride(0),
        GROUP=group, HAS_BIAS=bias is not None, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8,
        num_warps=4, num_stages=stages,
    )  # fmt: skip
    return out


# what the engine runs (`kernels.scaled_mm`): the fastest of cuBLAS and the Triton kernel
scaled_mm_fastest = functools.partial(scaled_mm, cublas=True)
