import torch
from torch import nn

import kernels
from engine.layers.quant import QuantizedActivation


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, dtype: torch.dtype, unit_offset: bool = False) -> None:
        """`unit_offset`: scale by (1 + weight) (Gemma), the sum taken in float32 as transformers
        takes it and kept so, since the kernels read the weight in float32 anyway."""
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        weight_dtype = torch.float32 if unit_offset else dtype
        self.weight = nn.Parameter(torch.empty(size, dtype=weight_dtype), requires_grad=False)
        self.quant: torch.dtype | None = None  # set by engine.layers.quant.fuse_input_quantization

    def process_weights_after_loading(self) -> None:
        if self.unit_offset:
            self.weight.add_(1.0)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """Without `residual`: rms_norm(x). With it: (rms_norm(x + residual), x + residual). With
        `quant` set, rms_norm(...) comes quantized per token, as a `QuantizedActivation`."""
        if self.quant is not None:
            if residual is None:
                return QuantizedActivation(*kernels.rms_norm_quant(x, self.weight, self.eps, self.quant), x.dtype)
            q, scale, summed = kernels.fused_add_rms_norm_quant(x, residual, self.weight, self.eps, self.quant)
            return QuantizedActivation(q, scale, x.dtype), summed
        if residual is None:
            return kernels.rms_norm(x, self.weight, self.eps)
        return kernels.fused_add_rms_norm(x, residual, self.weight, self.eps)
