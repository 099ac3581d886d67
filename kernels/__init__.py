"""Kernels used by the engine. Each op runs its Triton kernel on CUDA tensors and its PyTorch
twin in `kernels.reference` otherwise, so the CPU path is the reference and importing this
package pulls in neither Triton nor a GPU. Paged attention (`kernels.cpu`, batched over
sequences) and per-token quantization (`kernels.cpu_quant`) have faster CPU paths of their own,
held to the same reference. The Triton versions
live one family per module (`kernels.attention`, `kernels.cache`, `kernels.norm`,
`kernels.rotary`, `kernels.activation`, `kernels.moe`, ...) and can be called directly, e.g. on
CPU tensors under `TRITON_INTERPRET=1`."""

import functools
import inspect
from collections.abc import Callable
from importlib import import_module
from typing import ParamSpec, TypeVar

from kernels import cpu, cpu_quant, reference

# longest row whose quantization the GPU kernels fuse into the norm or activation in front
# (one program holds the row); longer ones are quantized by the layer
FUSED_QUANT_MAX_COLS = 16384

P = ParamSpec("P")
R = TypeVar("R")


def _op(twin: Callable[P, R], module: str, name: str | None = None, on: str | None = None) -> Callable[P, R]:
    """The op that runs `twin` on CPU tensors and `kernels.<module>.<name>` (the twin's name by
    default) on CUDA ones, deciding by the tensor argument `on` (the first by default). The
    Triton module is imported on the first CUDA call. Both sides are looked up on every call,
    as a plain call would, so that a patched function is the one called."""
    name = name or twin.__name__
    home = import_module(twin.__module__)
    params = list(inspect.signature(twin).parameters)
    on = on or params[0]
    index = params.index(on)

    @functools.wraps(twin)
    def op(*args: P.args, **kwargs: P.kwargs) -> R:
        tensor = args[index] if len(args) > index else kwargs[on]
        if tensor.is_cuda:
            return getattr(import_module(f"kernels.{module}"), name)(*args, **kwargs)
        return getattr(home, twin.__name__)(*args, **kwargs)

    return op


store_kvcache = _op(reference.store_kvcache, "cache")
paged_attention = _op(cpu.paged_attention, "attention")
rms_norm = _op(reference.rms_norm, "norm")
fused_add_rms_norm = _op(reference.fused_add_rms_norm, "norm")
rms_norm_quant = _op(reference.rms_norm_quant, "norm")
fused_add_rms_norm_quant = _op(reference.fused_add_rms_norm_quant, "norm")
rotary_embedding = _op(reference.rotary_embedding, "rotary", on="query")
silu_and_mul_quant = _op(reference.silu_and_mul_quant, "activation")
silu_and_mul = _op(reference.silu_and_mul, "activation")
fused_moe = _op(reference.fused_moe, "moe")
wna16_gemm = _op(reference.wna16_gemm, "gemm_wna16")
quantize_per_token = _op(cpu_quant.quantize_per_token, "gemm_scaled")
# on CUDA: cuBLAS for the FP8 products it runs, the Triton kernel for the rest
scaled_mm = _op(reference.scaled_mm, "gemm_scaled", "scaled_mm_fastest")
block_scaled_mm = _op(reference.block_scaled_mm, "gemm_scaled")
# static scales: one elementwise pass, PyTorch's own on either device
quantize_per_tensor = reference.quantize_per_tensor

__all__ = [
    "block_scaled_mm",
    "fused_add_rms_norm",
    "fused_add_rms_norm_quant",
    "fused_moe",
    "paged_attention",
    "quantize_per_tensor",
    "quantize_per_token",
    "rms_norm",
    "rms_norm_quant",
    "rotary_embedding",
    "scaled_mm",
    "silu_and_mul",
    "silu_and_mul_quant",
    "store_kvcache",
    "wna16_gemm",
]
