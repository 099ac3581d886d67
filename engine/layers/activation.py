import torch
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
