"""RMSNorm and fused residual-add + RMSNorm (twins: `kernels.reference.rms_norm`,
`kernels.reference.fused_add_rms_norm`)."""

import torch
import triton
import triton.language as tl

from kernels.util import interpreting


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    residual_ptr,
    weight_ptr,
    out_ptr,
    sum_ptr,
    n_rows,
    n_cols,
    stride_x,
    stride_residual,
    stride_out,
    stride_sum,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    mask = (rows < n_rows)[:, None] & col_ok[None, :]
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
    tl.store(out_ptr + rows * stride_out + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float):
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
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    summed = torch.empty_like(out) if residual is not None else out
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
        n_rows,
        n_cols,
        x2.stride(0),
        res2.stride(0) if res2 is not None else 0,
        out.stride(0),
        summed.stride(0),
        eps,
        HAS_RESIDUAL=residual is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        num_warps=num_warps,
    )
    return out.view(x.shape), summed.view(x.shape)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _launch(x, None, weight, eps)[0]


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch(x, residual, weight, eps)
