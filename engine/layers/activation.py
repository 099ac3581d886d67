import torch
import torch.nn.functional as F
from torch import nn

import kernels
from engine.layers.quant import QuantizedActivation


class SiluAndMul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant: torch.dtype | None = None  # set by engine.layers.quant.fuse_input_quantization

    def forward(self, x: torch.Tensor):
        """silu(gate) * up for x = [gate | up]; with `quant` set, quantized per token, as a
        `QuantizedActivation`."""
        if self.quant is not None:
            return QuantizedActivation(*kernels.silu_and_mul_quant(x, self.quant), x.dtype)
        return kernels.silu_and_mul(x)


class GeluTanhAndMul(nn.Module):
    """gelu(gate) * up for x = [gate | up] with gelu's tanh approximation (Gemma's GeGLU), in
    float32 and rounded once as `kernels.silu_and_mul` does; PyTorch's ops on every device, as
    there is no Triton kernel for it yet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = x.float().chunk(2, dim=-1)
        return (F.gelu(gate, approximate="tanh") * up).to(x.dtype)
