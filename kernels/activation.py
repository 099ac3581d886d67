"""SiLU-and-mul for the gated MLP (twin: `kernels.reference.silu_and_mul`), optionally followed by
the dynamic per-token quantization of its output for a W8A8 / FP8 down projection (twin:
`kernels.reference.silu_and_mul_quant`): then a program holds a whole row, which it writes once
as codes instead of writing it in the activation dtype for a quantize kernel to read back."""

import torch
import triton
import triton.language as tl

from kernels import FUSED_QUANT_MAX_COLS
from kernels.gemm_scaled import quant_constants, store_quantized
from kernels.util import interpreting


@triton.jit
def _silu_and_mul_kernel(
    x_ptr,
    out_ptr,
    scale_ptr,
    n_rows,
    n_cols,
    stride_x,
    stride_out,
    QUANT: tl.constexpr,
    HALF_RANGE: tl.constexpr,
    EPS: tl.constexpr,
    IS_FP8: tl.constexpr,
    INTERPRET: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    rows = rows.to(tl.int64)[:, None]
    gate = tl.load(x_ptr + rows * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + rows * stride_x + n_cols + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    if QUANT:  # the whole row is here (one program along the columns)
        store_quantized(y, x_ptr, out_ptr + rows * stride_out + cols[None, :], scale_ptr + rows, mask, row_ok[:, None],
                        HALF_RANGE, EPS, IS_FP8, INTERPRET)  # fmt: skip
    else:
        tl.store(out_ptr + rows * stride_out + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(x: torch.Tensor, quant: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    constants = quant_constants(quant)
    n_cols = x.shape[-1] // 2
    x2 = x.reshape(-1, 2 * n_cols)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    n_rows = x2.shape[0]
    out = torch.empty((n_rows, n_cols), dtype=quant or x.dtype, device=x.device)
    scale = torch.empty((n_rows, 1), dtype=torch.float32, device=x.device) if quant is not None else None
    if interpreting():
        block_n = triton.next_power_of_2(n_cols)
        block_m = min(max(1, 16384 // block_n), triton.next_power_of_2(max(n_rows, 1)))
    else:
        block_n = triton.next_power_of_2(n_cols) if quant is not None else min(triton.next_power_of_2(n_cols), 1024)
        block_m = 1
    num_warps = max(4, min(16, block_n // 1024)) if quant is not None else 4
    grid = (triton.cdiv(n_rows, block_m), triton.cdiv(n_cols, block_n))
    _silu_and_mul_kernel[grid](
        x2, out, scale if scale is not None else out, n_rows, n_cols, x2.stride(0), out.stride(0),
        QUANT=quant is not None, **constants, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )  # fmt: skip
    return out, scale


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    return _launch(x, None)[0].view(*x.shape[:-1], x.shape[-1] // 2)


def silu_and_mul_quant(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [rows, I], per-row scales [rows, 1]) of silu_and_mul(x) for rows of x = [gate | up]."""
    if x.shape[-1] // 2 > FUSED_QUANT_MAX_COLS:
        raise ValueError(
            f"rows of {x.shape[-1] // 2} are quantized by a separate pass (a program holds {FUSED_QUANT_MAX_COLS})"
        )
    return _launch(x, dtype)
