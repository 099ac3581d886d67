"""Which dtype a model computes in when asked for "auto": the fastest one that keeps its results.

On a GPU that is the checkpoint's own dtype. A CPU has fast bfloat16 math only with AVX512_BF16
or AMX; without them a bfloat16 matmul runs several times slower than float32 (4.5x on an AVX2
machine for SmolLM2's shapes), and float16 has no fast CPU math at all, so both compute in
float32 there. float32 holds every bfloat16 and float16 value exactly, so the weights lose
nothing. The engine, the evaluations and compression's forward passes all follow this rule,
and the runs record the dtype they chose so that a variant is scored as its base was.

torch is imported on use, so that `common` stays light to import."""

import functools

HALF = ("bfloat16", "float16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16)."""
    import torch

    try:
        flags = torch._C._cpu._get_cpu_capability()  # private, but the one place torch reports the ISA
    except AttributeError:
        flags = {}
    if not flags:
        try:
            with open("/proc/cpuinfo") as f:
                words = set(f.read().split())
        except OSError:
            return False
        return bool(words & {"avx512_bf16", "amx_bf16"})
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def compute_dtype(stored: str, device: str) -> str:
    """The dtype name "auto" means for a checkpoint stored in `stored` on `device` ("cpu", "cuda")."""
    if device != "cpu" or stored not in HALF:
        return stored
    return "bfloat16" if stored == "bfloat16" and cpu_has_native_bf16() else "float32"
