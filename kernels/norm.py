"""RMSNorm and fused residual-add + RMSNorm (twins: `kernels.reference.rms_norm`,
`kernels.reference.fused_add_rms_norm`), each optionally followed by the dynamic per-token
quantization of its output for a W8A8 / FP8 layer (twins: `kernels.reference.rms_norm_quant`,
`kernels.reference.fused_add_rms_norm_quant`): the row is in registers already, so its codes and
scale come out of the same pass instead of a second kernel reading it back."""

import torch
import triton
import triton.language as tl

from kernels.gemm_scaled import quant_constants, store_quantized
from kernels.util import interpreting


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    residual_ptr,
    weight_ptr,
    out_ptr,
    sum_ptr,
    scale_ptr,
    n_rows,
    n_cols,
    stride_x,
    stride_residual,
    stride_out,
    stride_sum,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    QUANT: tl.constexpr,
    HALF_RANGE: tl.constexpr,
    EPS: tl.constexpr,
    IS_FP8: tl.constexpr,
    INTERPRET: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    row_ok = rows < n_rows
    mask = row_ok[:, None] & col_ok[None, :]
    rows = rows.to(tl.int64)[:, None]
    x = tl.load(x_ptr + rows * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        residual = tl.load(residual_ptr + rows * stride_residual + cols[None, :], mask=mask, other=0.0)
        # rounded to the activation dtype before the norm, as an unfused model stores it
        summed = (x + residual.to(tl.float32)).to(sum_ptr.dtype.element_ty)
        tl.store(sum_ptr + rows * stride_sum + cols[None, :], summed, mask=mask)
        x = summed.to(tl.float32)
    inv_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    weight = tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = x * inv_rms[:, None] * weight[None, :]
    if QUANT:
        store_quantized(y, x_ptr, out_ptr + rows * stride_out + cols[None, :], scale_ptr + rows, mask, row_ok[:, None],
                        HALF_RANGE, EPS, IS_FP8, INTERPRET)  # fmt: skip
    else:
        tl.store(out_ptr + rows * stride_out + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float, quant: torch.dtype | None = None
):
    """Rows of x (and residual) as [rows, hidden]: (out, x + residual or out, scales or None)."""
    constants = quant_constants(quant)
    n_cols = x.shape[-1]
    x2 = x.reshape(-1, n_cols)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    res2 = None
    if residual is not None:
        res2 = residual.reshape(-1, n_cols)
        if res2.stride(-1) != 1:
            res2 = res2.contiguous()
    n_rows = x2.shape[0]
    out = torch.empty((n_rows, n_cols), dtype=quant or x.dtype, device=x.device)
    summed = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device) if residual is not None else out
    scale = torch.empty((n_rows, 1), dtype=torch.float32, device=x.device) if quant is not None else None
    block_n = triton.next_power_of_2(n_cols)
    if interpreting():
        block_m = min(max(1, 16384 // block_n), triton.next_power_of_2(max(n_rows, 1)))
        num_warps = 4
    else:
        # small rows share a program so each one still moves a few KB
        block_m = max(1, min(2048 // block_n, 8))
        num_warps = max(1, min(block_m * block_n // 512, 8))
    grid = (triton.cdiv(n_rows, block_m),)
    _rms_norm_kernel[grid](
        x2,
        res2 if res2 is not None else x2,
        weight,
        out,
        summed,
        scale if scale is not None else out,
        n_rows,
        n_cols,
        x2.stride(0),
        res2.stride(0) if res2 is not None else 0,
        out.stride(0),
        summed.stride(0),
        eps,
        HAS_RESIDUAL=residual is not None,
        QUANT=quant is not None,
        **constants,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        num_warps=num_warps,
    )
    return out, summed, scale


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _launch(x, None, weight, eps)[0].view(x.shape)


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    out, summed, _ = _launch(x, residual, weight, eps)
    return out.view(x.shape), summed.view(x.shape)


def rms_norm_quant(
    x: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [rows, hidden], per-row scales [rows, 1]) of rms_norm(x)."""
    out, _, scale = _launch(x, None, weight, eps, dtype)
    return out, scale


def fused_add_rms_norm_quant(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes [rows, hidden], per-row scales, x + residual) of rms_norm(x + residual)."""
    out, summed, scale = _launch(x, residual, weight, eps, dtype)
    return out, scale, summed.view(x.shape)
