"""Launch-configuration helpers shared by the Triton kernel modules."""

import os


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter. There each program and loop
    iteration costs Python time, so launches use few programs with big blocks, and 16-bit
    values are upcast inside kernels (the interpreter's bf16 dot is wrong)."""
    return os.environ.get("TRITON_INTERPRET") == "1"
