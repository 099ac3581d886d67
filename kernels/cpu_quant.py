"""Quantized Linear layers on the CPU, from weights prepared once at load.

The reference twins (`kernels.reference.wna16_gemm`, `scaled_mm`) dequantize the weight on
every call, which made compressed models slower than their base on the CPU. Here each layer's
weight is prepared once, after loading, for one of three plans:

- "native": our own kernel (`kernels.cpu_native`, AVX2), which reads the int4 / int8 / FP8
  codes themselves, repacked once, and decodes them in registers. A decode step on the CPU is
  bound by the weight bytes it reads, and this reads 1/8 (int4) or 1/4 (int8, FP8) of a float32
  weight's, so it is faster than the float32 base (bench/cpu_quant.py, bench/RESULTS.md). The
  weights it builds are the reference's to the bit; only the order of the float32 sums differs.
  The default wherever it runs (an x86 CPU with AVX2, FMA and F16C, and a C compiler to build
  it on first use); a layer it cannot take (N not a multiple of 8) takes the dense plan.
- "dense": the weight dequantized once to the compute dtype, then a plain `F.linear`. The
  arithmetic is the reference's own (it dequantizes the same way and multiplies in float32),
  so the outputs are bit-identical to the reference path, and the speed is the dense model's.
  The default where the native kernel cannot run.
- "packed": PyTorch's quantized CPU kernels on the packed weight: `_weight_int4pack_mm_for_cpu`
  (int4, group scales and zeros), `_weight_int8pack_mm` (int8, per-channel scales) and
  `torch._int_mm` (int8 x int8 -> int32, for W8A8). ATen's int4 kernel has an AVX-512 body
  only and falls back to a scalar loop on AVX2; on a 2-core AVX2 EPYC, bench/cpu_quant.py
  measured all three at 0.05x to 0.7x the speed of float32 `F.linear` (bench/RESULTS.md).
  FP8 has no PyTorch CPU math and takes the dense plan here.

`HUB_CPU_QUANT` chooses: "native" (refused where it cannot run, with the reason), "dense",
"packed" (refuses a layer the kernels cannot take, with the reason) or "reference" (no
preparation: the per-call twins, kept as ground truth).
"""

import os

import torch
import torch.nn.functional as F

from kernels import cpu_native
from kernels.reference import FP8_MAX, INT8_HALF_RANGE, dequantize_packed, unpack_int32

PLANS = ("native", "dense", "packed", "reference")
INT4_KERNEL_GROUPS = (256, 128, 64, 32)  # what _weight_int4pack_mm_for_cpu accepts, largest first
INT4_INNER_K_TILES = 2  # K must be a multiple of 16 * this; 2 fits every group size above


class UnsupportedCPUQuantError(ValueError):
    """A layer the requested CPU plan's kernels cannot take."""


def cpu_plan() -> str:
    """The plan for this process: HUB_CPU_QUANT, else "native" where it runs and "dense" elsewhere."""
    plan = os.environ.get("HUB_CPU_QUANT", "").strip().lower()
    if not plan:
        return "native" if cpu_native.unavailable() is None else "dense"
    if plan not in PLANS:
        raise ValueError(f"HUB_CPU_QUANT={plan!r}: expected one of {', '.join(PLANS)}")
    if plan == "native" and (why := cpu_native.unavailable()) is not None:
        raise ValueError(f"HUB_CPU_QUANT=native: {why}")
    return plan


# --- dense: dequantize once --------------------------------------------------------------------


def dense_from_packed(
    packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, group_size: int
) -> torch.Tensor:
    """The float32 weight [N, K] the reference `wna16_gemm` rebuilds on every call."""
    return dequantize_packed(packed, scale, zero, bits, group_size).contiguous()


def dense_from_scaled(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weight [N, K] the reference `scaled_mm` rebuilds on every call (in float32), in `dtype`."""
    return (weight.float() * scale.float().reshape(-1, 1)).to(dtype).contiguous()


def dense_wna16_mm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # with a float32 weight, the reference's order: activations to float32, the product
    # rounded to x's dtype; a bf16 / fp16 weight multiplies in its own dtype, as a dense model
    return F.linear(x.to(weight.dtype), weight).to(x.dtype)


def dense_scaled_mm(
    q: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype, bias: torch.Tensor | None
) -> torch.Tensor:
    """`reference.scaled_mm` with its weight already dequantized: activations stay quantized
    per token (the model was calibrated with them), then dequantized for a float32 GEMM."""
    a = (q.float() * scale.float().reshape(-1, 1)).to(weight.dtype)
    return F.linear(a, weight, None if bias is None else bias.to(weight.dtype)).to(out_dtype)


# divisors as tensors, as the reference divides (a Python number may become a reciprocal multiply)
_HALF_RANGE = {torch.int8: torch.tensor(INT8_HALF_RANGE), torch.float8_e4m3fn: torch.tensor(FP8_MAX)}
_EPS = torch.finfo(torch.float32).eps


def quantize_per_token(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """`reference.quantize_per_token` bit for bit in half the ops (each costs several µs on a
    decode step's few rows): max|x| is the reference's max(|min(x, 0)|, max(x, 0))."""
    if dtype not in _HALF_RANGE:
        raise ValueError(f"per-token quantization to {dtype} is not supported (int8, float8_e4m3fn)")
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True) / _HALF_RANGE[dtype]
    scale.masked_fill_(scale == 0, _EPS)
    q = xf / scale
    if dtype == torch.int8:
        return q.clamp_(-128, 127).round_().to(dtype), scale
    return q.clamp_(-FP8_MAX, FP8_MAX).to(dtype), scale


# --- packed: PyTorch's quantized CPU kernels --------------------------------------------------


def int4_kernel_group(n: int, k: int, group_size: int) -> int | None:
    """The group size to run an int4 weight [n, k] of `group_size` groups with (a divisor of
    it, its scales repeated), or None where the int4 kernel cannot take the shape."""
    if n % 16 or k % (16 * INT4_INNER_K_TILES):
        return None
    return next((g for g in INT4_KERNEL_GROUPS if group_size % g == 0 and k % g == 0), None)


def int4_refusal(n: int, k: int, group_size: int) -> str:
    return (
        f"the CPU int4 kernel cannot take a [{n}, {k}] weight in groups of {group_size} (it needs "
        f"N % 16 == 0, K % {16 * INT4_INNER_K_TILES} == 0 and one of the groups {INT4_KERNEL_GROUPS} dividing both)"
    )


def pack_int4(
    packed: torch.Tensor,  # [N, K / 8] int32, compressed-tensors' layout
    scale: torch.Tensor,  # [N, K / group_size]
    zero: torch.Tensor | None,  # [N, K / group_size] int8 codes (minus 8), or None
    group_size: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(weight, scales_and_zeros [K / g, N, 2], g) for `int4_mm`. The kernel computes
    w = (code - 8) * scale + zero with a float zero, so compressed-tensors' integer zero point z
    (w = (code - 8 - z) * scale) becomes the float -z * scale."""
    n, k = packed.shape[0], packed.shape[1] * 8
    g = int4_kernel_group(n, k, group_size)
    if g is None:
        raise UnsupportedCPUQuantError(int4_refusal(n, k, group_size))
    codes = unpack_int32(packed, 4)  # the stored codes are already the kernel's unsigned 0..15
    weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.contiguous(), INT4_INNER_K_TILES)
    s = scale.float().repeat_interleave(group_size // g, dim=1)
    z = torch.zeros_like(s) if zero is None else -zero.float().repeat_interleave(group_size // g, dim=1) * s
    scales_zeros = torch.stack((s.t(), z.t()), dim=-1).to(dtype).contiguous()
    return weight, scales_zeros, g


def int4_mm(x: torch.Tensor, weight: torch.Tensor, scales_zeros: torch.Tensor, group: int) -> torch.Tensor:
    # the kernel wants activations in the scales' dtype (fp32, bf16 or fp16)
    out = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(scales_zeros.dtype), weight, group, scales_zeros)
    return out.to(x.dtype)


def pack_int8_channel(
    packed: torch.Tensor,  # [N, K / 4] int32
    scale: torch.Tensor,  # [N, 1]
    zero: torch.Tensor | None,  # [N, 1] int8 codes (minus 128), or None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(int8 weight [N, K], scale [N] float32, zero term [N] or None) for `int8_channel_mm`.
    An asymmetric row's w = (c - z) * s splits into the kernel's c * s and a term
    -s * z * sum(x): codes minus a zero point need not fit int8."""
    codes = (unpack_int32(packed, 8) - 128).to(torch.int8).contiguous()
    s = scale.float().reshape(-1).contiguous()
    zero_term = None if zero is None else (s * zero.float().reshape(-1)).contiguous()
    return codes, s, zero_term


def int8_channel_mm(
    x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, zero_term: torch.Tensor | None
) -> torch.Tensor:
    xf = x.float()
    out = torch.ops.aten._weight_int8pack_mm(xf, weight, scale)
    if zero_term is not None:
        out = out - xf.sum(dim=-1, keepdim=True) * zero_term
    return out.to(x.dtype)


def int8_int_mm(
    q: torch.Tensor,  # [M, K] int8, quantized per token
    scale: torch.Tensor,  # [M, 1] float32
    weight_t: torch.Tensor,  # [K, N] int8: the stored [N, K] weight's transposed view
    weight_scale: torch.Tensor,  # [1, N] float32
    out_dtype: torch.dtype,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """W8A8: the int32 product is exact; the scales apply to it in float32. A transposed view
    of the row-major weight, not a transposed copy: measured faster with ATen's CPU _int_mm."""
    out = torch._int_mm(q, weight_t).float() * scale.float().reshape(-1, 1) * weight_scale
    if bias is not None:
        out += bias.float()
    return out.to(out_dtype)
