"""SiLU-and-mul for the gated MLP (twin: `kernels.reference.silu_and_mul`)."""

import torch
import triton
import triton.language as tl

from kernels.util import interpreting


@triton.jit
def _silu_and_mul_kernel(
    x_ptr,
    out_ptr,
    n_rows,
    n_cols,
    stride_x,
    stride_out,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    rows = rows.to(tl.int64)[:, None]
    gate = tl.load(x_ptr + rows * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + rows * stride_x + n_cols + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + rows * stride_out + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    n_cols = x.shape[-1] // 2
    x2 = x.reshape(-1, 2 * n_cols)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    n_rows = x2.shape[0]
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    if interpreting():
        block_n = triton.next_power_of_2(n_cols)
        block_m = min(max(1, 16384 // block_n), triton.next_power_of_2(max(n_rows, 1)))
    else:
        block_n = min(triton.next_power_of_2(n_cols), 1024)
        block_m = 1
    grid = (triton.cdiv(n_rows, block_m), triton.cdiv(n_cols, block_n))
    _silu_and_mul_kernel[grid](
        x2, out, n_rows, n_cols, x2.stride(0), out.stride(0), BLOCK_M=block_m, BLOCK_N=block_n, num_warps=4
    )
    return out.view(*x.shape[:-1], n_cols)
