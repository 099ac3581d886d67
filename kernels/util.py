"""Launch-configuration helpers and device functions shared by the Triton kernel modules."""

import os

import triton
import triton.language as tl


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter. There each program and loop
    iteration costs Python time, so launches use few programs with big blocks, and 16-bit
    values are upcast inside kernels (the interpreter's bf16 dot is wrong)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def grouped_tile(pid, tiles_m, tiles_n, GROUP_M: tl.constexpr):
    """(row tile, column tile) of program `pid`: programs walk the output in column bands of
    GROUP_M row tiles, so neighbours share B in L2."""
    per_band = GROUP_M * tiles_n
    first_m = pid // per_band * GROUP_M
    rows_in_band = tl.minimum(tiles_m - first_m, GROUP_M)
    return first_m + (pid % per_band) % rows_in_band, (pid % per_band) // rows_in_band
