"""Linear layers, with the weight format behind a `LinearMethod` seam.

A layer owns its parameters; its `LinearMethod` decides what they are (a dense matrix; packed
int4/int8 with group scales, int8 or FP8 with scales, 2:4 sparse: `engine.layers.quant`) and how
`x @ W.T` is computed from them. `linear_method_for` reads the checkpoint's quantization config;
each layer then asks it for its own method by the checkpoint names of its shards, so that a
config's targets and ignore list reach the right layers without touching the models.
"""

import torch
import torch.nn.functional as F
from torch import nn


def copy_weight(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    # copy_ would broadcast a wrongly shaped tensor without complaint
    if dst.shape != src.shape:
        raise ValueError(f"{name}: checkpoint shape {tuple(src.shape)} does not match the model's {tuple(dst.shape)}")
    dst.copy_(src)


class LinearMethod:
    def for_layer(self, names: list[str]) -> "LinearMethod":
        """The method of the layer whose output shards are the checkpoint modules `names`."""
        return self

    def create_weights(self, layer: "Linear", dtype: torch.dtype) -> None:
        raise NotImplementedError

    def load_weight(self, layer: "Linear", name: str, tensor: torch.Tensor, shard: int | None) -> None:
        """Copies checkpoint tensor `name` (e.g. "weight") of output shard `shard` into the layer."""
        raise NotImplementedError

    def process_weights_after_loading(self, layer: "Linear") -> None:
        """Called once per layer after every shard is loaded: a method that runs from a layout
        other than the checkpoint's (e.g. CPU-packed or dequantized weights) builds it here."""

    def apply(self, layer: "Linear", x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DenseLinearMethod(LinearMethod):
    def create_weights(self, layer: "Linear", dtype: torch.dtype) -> None:
        layer.weight = nn.Parameter(
            torch.empty(layer.out_features, layer.in_features, dtype=dtype), requires_grad=False
        )

    def load_weight(self, layer: "Linear", name: str, tensor: torch.Tensor, shard: int | None) -> None:
        param = getattr(layer, name, None)
        if not isinstance(param, torch.Tensor):
            raise KeyError(f"unexpected tensor {name!r} for a dense linear layer")
        copy_weight(layer.output_slice(param, shard), tensor, name)

    def apply(self, layer: "Linear", x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, layer.weight, layer.bias)


def linear_method_for(quantization: dict | None) -> LinearMethod:
    """The weight format of a checkpoint's linear layers (from config.json's quantization_config)."""
    if quantization:
        from engine.layers.quant import CompressedTensorsMethod

        return CompressedTensorsMethod(quantization)
    return DenseLinearMethod()


class Linear(nn.Module):
    """y = x @ W.T (+ b). `output_sizes` > 1 entries fuse several checkpoint matrices that share an
    input (q/k/v, gate/up) into one matmul; checkpoint tensor i of the fused group fills rows
    `sum(output_sizes[:i]) : sum(output_sizes[:i+1])`. `names` are the checkpoint module names of
    those shards (e.g. model.layers.0.self_attn.q_proj, ...k_proj, ...v_proj)."""

    def __init__(
        self,
        in_features: int,
        output_sizes: list[int],
        bias: bool,
        method: LinearMethod,
        dtype: torch.dtype,
        names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.output_sizes = output_sizes
        self.out_features = sum(output_sizes)
        self.method = method.for_layer(names or [])
        self.method.create_weights(self, dtype)
        self.bias = nn.Parameter(torch.empty(self.out_features, dtype=dtype), requires_grad=False) if bias else None

    def output_slice(self, param: torch.Tensor, shard: int | None) -> torch.Tensor:
        if shard is None:
            return param
        start = sum(self.output_sizes[:shard])
        return param.narrow(0, start, self.output_sizes[shard])

    def load_weight(self, name: str, tensor: torch.Tensor, shard: int | None) -> None:
        if name == "bias":
            if self.bias is None:
                raise KeyError("checkpoint has a bias for a layer built without one")
            copy_weight(self.output_slice(self.bias, shard), tensor, name)
        else:
            self.method.load_weight(self, name, tensor, shard)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.apply(self, x)
