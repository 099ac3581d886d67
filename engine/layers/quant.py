"""Compressed-tensors checkpoints: which scheme each Linear has, and the `LinearMethod`s that run
them straight from the stored tensors (the layouts compressed-tensors writes).

- pack-quantized W4A16 / W8A16 (int weights packed into int32, group or channel scales,
  symmetric or with zero points): `WNA16Method`, the dequant-GEMM kernel;
- int-quantized W8A8 (int8 weights with per-channel or per-tensor scales, int8 activations
  quantized per token at run time): `ScaledMMMethod` over int8;
- float-quantized FP8 (E4M3 weights, per-channel or per-tensor, FP8 activations per token):
  `ScaledMMMethod` over float8_e4m3fn; it and W8A8 also take activations quantized with a static
  per-tensor scale calibrated by compress (`input_scale`, compressed-tensors' FP8 scheme);
- float-quantized FP8 block (E4M3 weights with a scale per 128 x 128 block, FP8 activations
  per token and group of 128): `BlockScaledMMMethod`;
- nvfp4- / mxfp4-pack-quantized FP4 weights with 16-bit activations (NVFP4A16, MXFP4A16):
  `FP4DecodedMethod`, decoded to the compute dtype at load;
- 2:4 sparse models, saved dense: `Sparse24Method`, PyTorch's semi-structured sparse tensors on
  GPUs that have them (`sparsify_two_of_four`).

On CPUs the stored tensors are kept, and each layer also gets, once after loading, the weight
of its `kernels.cpu_quant` plan: repacked for our own CPU kernel (which reads the quantized codes:
the default where it runs), dequantized to the compute dtype (bit-identical to the per-call
reference twins, at the dense model's speed) or, asked for, repacked for PyTorch's quantized CPU
kernels. CUDA layers run the Triton kernels on the stored tensors.

W8A8 / FP8 layers other than o_proj get their input already quantized by the kernel in front
(the RMSNorm, or the SiLU-and-mul): `fuse_input_quantization`, one kernel where there were two;
on the native CPU plan the kernel quantizes its own input instead.

Config groups pick Linears the way compressed-tensors does: `ignore` first, then targets that
are a class name ("Linear": every projection), an exact module name, or a `re:` regex over the
checkpoint's module names. A fused layer (q/k/v, gate/up) needs one scheme for all its shards.
A `kv_cache_scheme` (static per-tensor FP8, with or without config groups) is accepted: its
k_scale / v_scale tensors are what `LLM(kv_cache_dtype="fp8")` quantizes K and V with.
"""

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import kernels
from engine.config import UnsupportedModelError
from engine.layers.linear import DenseLinearMethod, Linear, LinearMethod, copy_weight
from kernels import cpu_native, cpu_quant
from kernels.reference import dequantize_groups, unpack_int32

_LINEAR_CLASSES = ("Linear",)  # class-name targets that select our Linear layers


# FP4 formats: (weight strategy, group size) of each; the E2M1 codes' scales are FP8 over a
# global scale per tensor (NVFP4) or powers of two (MXFP4's E8M0)
FP4_FORMATS = {"nvfp4-pack-quantized": ("tensor_group", 16), "mxfp4-pack-quantized": ("group", 32)}


@dataclass(frozen=True)
class Scheme:
    format: str  # pack-quantized | int-quantized | float-quantized
    weight_type: str  # int | float
    bits: int
    symmetric: bool
    strategy: str  # group | channel | tensor | block | tensor_group
    group_size: int | None  # group weights: inputs per scale; block weights: the activations' group (block width)
    activations: str | None  # None (weight-only), or "int" / "float": 8-bit dynamic per token (block: per token group)
    block_rows: int | None = None  # block weights: rows per block
    static_input: bool = False  # activations quantized with one calibrated scale per tensor (input_scale)


def _infer_format(weights: dict, activations: dict | None) -> str:
    # compressed-tensors' choice when a group names none (compressors/format.py)
    if weights.get("type", "int") == "float":
        return "float-quantized"
    return "int-quantized" if activations is not None else "pack-quantized"


def _parse_scheme(name: str, group: dict, model_format: str | None) -> Scheme:
    where = f"quantization_config group {name!r}"
    weights, acts = group.get("weights"), group.get("input_activations")
    if weights is None:
        raise UnsupportedModelError(f"{where}: activation-only quantization is not supported")
    if group.get("output_activations") is not None:
        raise UnsupportedModelError(f"{where}: output activation quantization is not supported")
    fmt = group.get("format") or (model_format if model_format not in (None, "mixed-precision") else None)
    fmt = fmt or _infer_format(weights, acts)
    wtype, bits = weights.get("type", "int"), weights.get("num_bits", 8)
    group_size = weights.get("group_size")
    strategy = weights.get("strategy") or (
        "group" if group_size and group_size > 0 else "channel" if group_size == -1 else "tensor"
    )
    if weights.get("dynamic"):
        raise UnsupportedModelError(f"{where}: dynamic weight quantization is not supported")
    if weights.get("actorder") == "group" or weights.get("actorder") == "dynamic":
        raise UnsupportedModelError(f"{where}: group activation ordering (weight_g_idx) is not supported")
    if strategy not in ("group", "channel", "tensor", "block", "tensor_group"):
        raise UnsupportedModelError(
            f"{where}: weight strategy {strategy!r} is not supported (group, channel, tensor, block, tensor_group)"
        )
    block = weights.get("block_structure") if strategy == "block" else None
    if strategy == "block" and not (
        isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)
    ):
        raise UnsupportedModelError(f"{where}: block weights need a block_structure [rows, cols], got {block!r}")
    activations, static = None, False
    if acts is not None:
        # block weights take their activations per token and group of the block's width
        per = ("group", block[1]) if block else ("token", None)
        dynamic = (
            acts.get("dynamic") is True and (acts.get("strategy"), acts.get("group_size") if block else None) == per
        )
        static = acts.get("dynamic") is False and acts.get("strategy") == "tensor" and not block
        if not (
            (dynamic or static)
            and acts.get("symmetric", True)
            and acts.get("num_bits", 8) == 8
            and acts.get("type", "int") == wtype
        ):
            raise UnsupportedModelError(
                f"{where}: input activations must be symmetric 8-bit of the weights' type, dynamic per token "
                f"(W8A8, FP8_DYNAMIC) or static per tensor (FP8) or, with block weights, dynamic per token and "
                f"group of the block's width (FP8_BLOCK)"
            )
        activations = wtype
    scheme = Scheme(
        fmt,
        wtype,
        bits,
        bool(weights.get("symmetric", True)),
        strategy,
        group_size if strategy in ("group", "tensor_group") else block[1] if block else None,
        activations,
        block[0] if block else None,
        static,
    )
    if fmt in FP4_FORMATS:
        if not (wtype == "float" and bits == 4 and activations is None and scheme.symmetric
                and (strategy, scheme.group_size) == FP4_FORMATS[fmt]):  # fmt: skip
            raise UnsupportedModelError(
                f"{where}: {fmt} is supported as FP4 weights in groups of {FP4_FORMATS[fmt][1]} with 16-bit "
                "activations (NVFP4A16, MXFP4A16); FP4 activations (NVFP4, MXFP4) are not supported yet"
            )
        return scheme
    supported = (
        (fmt == "pack-quantized" and wtype == "int" and bits in (4, 8) and activations is None
         and strategy in ("group", "channel"))
        or (fmt == "int-quantized" and wtype == "int" and bits == 8 and scheme.symmetric and activations == "int"
            and strategy in ("channel", "tensor"))
        or (fmt == "float-quantized" and wtype == "float" and bits == 8 and activations == "float"
            and strategy in ("channel", "tensor", "block"))
    )  # fmt: skip
    if not supported:
        raise UnsupportedModelError(
            f"{where}: {fmt} {wtype}{bits} {strategy} weights"
            + (f" with {activations} activations" if activations else " without activation quantization")
            + " are not supported yet; supported: pack-quantized int4/int8 (group or channel, symmetric or "
            "asymmetric, no activation quantization), int-quantized W8A8 and float-quantized FP8 (channel or "
            "tensor weights, dynamic per-token activations; or block weights, dynamic per-token-group activations)"
        )
    return scheme


def _matches(name: str, target: str) -> bool:
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return target == name or target in _LINEAR_CLASSES


class CompressedTensorsMethod(LinearMethod):
    """Chooses each Linear's method from config.json's `quantization_config`."""

    def __init__(self, quantization: dict) -> None:
        method = quantization.get("quant_method")
        if method != "compressed-tensors":
            raise UnsupportedModelError(
                f"quantized checkpoints of quant_method {method!r} are not supported; "
                "the engine runs compressed-tensors checkpoints"
            )
        status = quantization.get("quantization_status", "compressed")
        if status != "compressed":
            raise UnsupportedModelError(f"compressed-tensors status {status!r} is not supported (only 'compressed')")
        for key, what in (
            ("sparsity_config", "sparse compression formats (2:4 models load when saved dense)"),
            ("transform_config", "transforms (QuIP, SpinQuant)"),
        ):
            if quantization.get(key):
                raise UnsupportedModelError(f"compressed-tensors {what} are not supported yet ({key})")
        kv_cache_scheme = quantization.get("kv_cache_scheme")
        if kv_cache_scheme:
            _check_kv_cache_scheme(kv_cache_scheme)
        groups = quantization.get("config_groups") or {}
        if not groups and not kv_cache_scheme:
            raise UnsupportedModelError("compressed-tensors configs without config_groups are not supported yet")
        self.ignore: list[str] = list(quantization.get("ignore") or [])
        self.groups = [
            (list(g.get("targets") or []), _parse_scheme(name, g, quantization.get("format")))
            for name, g in groups.items()
        ]
        self._methods: dict[Scheme, LinearMethod] = {}
        if self.scheme_for("lm_head") is not None:
            raise UnsupportedModelError(
                "a quantized lm_head is not supported yet (compressed-tensors ignore: [lm_head])"
            )

    def scheme_for(self, name: str) -> Scheme | None:
        if any(_matches(name, t) for t in self.ignore):
            return None
        found = [scheme for targets, scheme in self.groups if any(_matches(name, t) for t in targets)]
        if len(set(found)) > 1:
            raise UnsupportedModelError(f"{name} matches several quantization config groups")
        return found[0] if found else None

    def for_layer(self, names: list[str]) -> LinearMethod:
        if not names:
            raise ValueError("a quantized model's Linear layers need their checkpoint module names")
        schemes = {self.scheme_for(n) for n in names}
        if len(schemes) > 1:
            raise UnsupportedModelError(f"the fused layers {names} are quantized differently; the engine fuses them")
        scheme = schemes.pop()
        if scheme is None:
            return DenseLinearMethod()
        if scheme not in self._methods:
            cls = (
                WNA16Method if scheme.format == "pack-quantized"
                else FP4DecodedMethod if scheme.format in FP4_FORMATS
                else BlockScaledMMMethod if scheme.strategy == "block"
                else ScaledMMMethod
            )  # fmt: skip
            self._methods[scheme] = cls(scheme)
        return self._methods[scheme]


def _check_kv_cache_scheme(scheme: dict) -> None:
    """Only the KV-cache scheme the engine's FP8 cache stores: static, symmetric, one scale per
    tensor (vLLM's too)."""
    if not isinstance(scheme, dict):
        raise UnsupportedModelError(f"compressed-tensors kv_cache_scheme {scheme!r} is not a mapping")
    wanted = {"num_bits": 8, "type": "float", "strategy": "tensor", "symmetric": True, "dynamic": False}
    wrong = {k: scheme.get(k, v) for k, v in wanted.items() if scheme.get(k, v) != v}
    if wrong:
        raise UnsupportedModelError(
            f"compressed-tensors kv_cache_scheme with {wrong} is not supported yet; "
            "the engine's KV cache takes static symmetric per-tensor FP8 (num_bits 8, type float, strategy tensor)"
        )


def _checkpoint_shape(layer: Linear, name: str, tensor: torch.Tensor, shard: int | None) -> None:
    rows = layer.out_features if shard is None else layer.output_sizes[shard]
    if tensor.tolist() != [rows, layer.in_features]:
        raise ValueError(
            f"{name}: checkpoint weight_shape {tensor.tolist()} does not match the model's {[rows, layer.in_features]}"
        )


class WNA16Method(LinearMethod):
    """Packed int4 / int8 weights with group (or channel) scales, activations left as they are.
    Zero points, packed eight to a word along the output dim on disk, are unpacked to int8 at
    load (a fused layer's shards need not start on a word)."""

    def __init__(self, scheme: Scheme) -> None:
        self.bits = scheme.bits
        self.group_size = scheme.group_size  # None: channel (one group of K)
        self.symmetric = scheme.symmetric

    def create_weights(self, layer: Linear, dtype: torch.dtype) -> None:
        n, k = layer.out_features, layer.in_features
        group = self.group_size or k
        if k % group or (k * self.bits) % 32:
            raise UnsupportedModelError(
                f"in_features {k} is not a multiple of the group size {group} and of {32 // self.bits}"
            )
        layer.group_size = group
        layer.weight_packed = nn.Parameter(torch.empty(n, k * self.bits // 32, dtype=torch.int32), requires_grad=False)
        # scales in the compute dtype, as compressed-tensors writes them in the model's dtype
        layer.weight_scale = nn.Parameter(torch.empty(n, k // group, dtype=dtype), requires_grad=False)
        layer.weight_zero_point = (
            None if self.symmetric else nn.Parameter(torch.empty(n, k // group, dtype=torch.int8), requires_grad=False)
        )

    def load_weight(self, layer: Linear, name: str, tensor: torch.Tensor, shard: int | None) -> None:
        if name == "weight_shape":
            return _checkpoint_shape(layer, name, tensor, shard)
        if name == "weight_zero_point" and layer.weight_zero_point is not None:
            rows = layer.output_slice(layer.weight_zero_point, shard)
            codes = unpack_int32(tensor.t(), self.bits).t()[: rows.shape[0]] - (1 << (self.bits - 1))
            return copy_weight(rows, codes.to(torch.int8), name)
        if name in ("weight_packed", "weight_scale"):
            return copy_weight(layer.output_slice(getattr(layer, name), shard), tensor, name)
        raise KeyError(f"unexpected tensor {name!r} for a pack-quantized linear layer")

    def process_weights_after_loading(self, layer: Linear) -> None:
        layer.cpu_kind = None  # the per-call path: the Triton kernel on CUDA, the reference twin on CPU
        if layer.weight_packed.device.type != "cpu" or (plan := cpu_quant.cpu_plan()) == "reference":
            return
        packed, scale, zero = layer.weight_packed.data, layer.weight_scale.data, layer.weight_zero_point
        zero = None if zero is None else zero.data
        n, k = layer.out_features, layer.in_features
        if plan == "native" and cpu_native.refusal(n, k, layer.group_size) is None:
            layer.cpu_native = cpu_native.pack_wna16(packed, scale, zero, self.bits)
            layer.cpu_kind = "native"
            return
        if plan == "packed" and self.bits == 4:
            if cpu_quant.int4_kernel_group(n, k, layer.group_size) is None:
                raise UnsupportedModelError(f"HUB_CPU_QUANT=packed: {cpu_quant.int4_refusal(n, k, layer.group_size)}")
            weight, scales_zeros, group = cpu_quant.pack_int4(packed, scale, zero, layer.group_size, scale.dtype)
            layer.register_buffer("cpu_weight", weight, persistent=False)
            layer.register_buffer("cpu_scales_zeros", scales_zeros, persistent=False)
            layer.cpu_group = group
            layer.cpu_kind = "int4"
            return
        if plan == "packed":
            if layer.group_size != k:
                raise UnsupportedModelError(
                    f"HUB_CPU_QUANT=packed: int8 weights in groups of {layer.group_size} have no PyTorch CPU "
                    "kernel (_weight_int8pack_mm takes per-channel scales); HUB_CPU_QUANT=dense runs them"
                )
            weight, scale8, zero_term = cpu_quant.pack_int8_channel(packed, scale, zero)
            layer.register_buffer("cpu_weight", weight, persistent=False)
            layer.register_buffer("cpu_scale", scale8, persistent=False)
            layer.cpu_zero_term = zero_term
            layer.cpu_kind = "int8"
            return
        weight = cpu_quant.dense_from_packed(packed, scale, zero, self.bits, layer.group_size)
        layer.register_buffer("cpu_weight", weight.to(scale.dtype), persistent=False)
        layer.cpu_kind = "dense"

    def apply(self, layer: Linear, x: torch.Tensor) -> torch.Tensor:
        kind = getattr(layer, "cpu_kind", None)
        if kind == "native":
            out = cpu_native.mm(x.reshape(-1, x.shape[-1]), layer.cpu_native).to(x.dtype)
            out = out.view(*x.shape[:-1], out.shape[-1])
        elif kind == "dense":
            out = cpu_quant.dense_wna16_mm(x, layer.cpu_weight)
        elif kind == "int4":
            x2 = x.reshape(-1, x.shape[-1])
            out = cpu_quant.int4_mm(x2, layer.cpu_weight, layer.cpu_scales_zeros, layer.cpu_group)
            out = out.view(*x.shape[:-1], out.shape[-1])
        elif kind == "int8":
            x2 = x.reshape(-1, x.shape[-1])
            out = cpu_quant.int8_channel_mm(x2, layer.cpu_weight, layer.cpu_scale, layer.cpu_zero_term)
            out = out.view(*x.shape[:-1], out.shape[-1])
        else:
            out = kernels.wna16_gemm(
                x, layer.weight_packed, layer.weight_scale, layer.weight_zero_point, self.bits, layer.group_size
            )
        return out if layer.bias is None else out + layer.bias


def _copy_codes(layer: Linear, tensor: torch.Tensor, shard: int | None, dtype: torch.dtype) -> None:
    """A shard's int8 / FP8 weight codes, stored as they are (a cast would change them)."""
    if tensor.dtype != dtype:
        raise ValueError(f"weight: checkpoint dtype {tensor.dtype} is not the scheme's {dtype}")
    copy_weight(layer.output_slice(layer.weight, shard), tensor, "weight")


class ScaledMMMethod(LinearMethod):
    """int8 (W8A8) or FP8 weights [N, K] with per-channel or per-tensor scales; activations are
    quantized per token on every call and the product is scaled in the GEMM's epilogue. A
    per-tensor scale is kept per row (each shard of a fused layer has its own)."""

    def __init__(self, scheme: Scheme) -> None:
        self.qdtype = torch.int8 if scheme.weight_type == "int" else torch.float8_e4m3fn
        self.static = scheme.static_input

    def create_weights(self, layer: Linear, dtype: torch.dtype) -> None:
        n, k = layer.out_features, layer.in_features
        layer.weight = nn.Parameter(torch.empty(n, k, dtype=self.qdtype), requires_grad=False)
        layer.weight_scale = nn.Parameter(torch.empty(n, 1, dtype=torch.float32), requires_grad=False)
        if self.static:
            # the shards of a fused layer read one input: their scales are one (else the largest, as vLLM)
            layer.input_scale = nn.Parameter(torch.zeros(1, dtype=torch.float32), requires_grad=False)
        layer.cpu_dtype = dtype  # a CPU weight dequantized at load takes the compute dtype

    def load_weight(self, layer: Linear, name: str, tensor: torch.Tensor, shard: int | None) -> None:
        if name == "weight":
            return _copy_codes(layer, tensor, shard, self.qdtype)
        if name == "weight_scale":
            rows = layer.output_slice(layer.weight_scale, shard)
            src = tensor.reshape(-1, 1)
            return copy_weight(rows, src.expand(rows.shape[0], 1) if src.numel() == 1 else src, name)
        if name == "input_scale" and self.static:
            if tensor.numel() != 1:
                raise ValueError(f"{name}: a static per-tensor scale has one value, got shape {tuple(tensor.shape)}")
            layer.input_scale.data = torch.maximum(layer.input_scale.data, tensor.float().reshape(1))
            return None
        raise KeyError(f"unexpected tensor {name!r} for a {self.qdtype} quantized linear layer")

    def process_weights_after_loading(self, layer: Linear) -> None:
        layer.cpu_kind = None  # the per-call path: Triton / cuBLAS on CUDA, the reference twin on CPU
        if layer.weight.device.type != "cpu" or (plan := cpu_quant.cpu_plan()) == "reference":
            return
        n, k = layer.weight.shape
        # the native kernel quantizes its input per token: static scales take the dense plan
        if plan == "native" and not self.static and cpu_native.refusal(n, k, k) is None:
            layer.cpu_native = cpu_native.pack_scaled(layer.weight.data, layer.weight_scale.data)
            layer.cpu_kind = "native"
            return
        if plan == "packed" and self.qdtype == torch.int8:
            # torch._int_mm reads the stored [N, K] weight through a transposed view: no copy
            layer.register_buffer("cpu_scale", layer.weight_scale.data.float().reshape(1, -1), persistent=False)
            layer.cpu_kind = "int_mm"
            return
        # FP8 has no CPU math: its weight, like int8's on the dense plan, is dequantized once
        dense = cpu_quant.dense_from_scaled(layer.weight.data, layer.weight_scale.data, layer.cpu_dtype)
        layer.register_buffer("cpu_weight", dense, persistent=False)
        layer.cpu_kind = "dense"

    def apply(self, layer: Linear, x: "torch.Tensor | QuantizedActivation") -> torch.Tensor:
        if getattr(layer, "cpu_kind", None) == "native":  # quantizes its own input (never fused)
            out = cpu_native.mm(x.reshape(-1, x.shape[-1]), layer.cpu_native, self.qdtype)
            out = (out if layer.bias is None else out + layer.bias.float()).to(x.dtype)
            return out.view(*x.shape[:-1], out.shape[-1])
        if isinstance(x, QuantizedActivation):  # quantized by the norm in front (fuse_input_quantization)
            return self._scaled_mm(layer, x.q, x.scale, x.dtype)
        x2 = x.reshape(-1, x.shape[-1])
        if self.static:
            q, scale = kernels.quantize_per_tensor(x2, layer.input_scale, self.qdtype)
        else:
            q, scale = kernels.quantize_per_token(x2, self.qdtype)
        out = self._scaled_mm(layer, q, scale, x.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    def _scaled_mm(self, layer: Linear, q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        kind = getattr(layer, "cpu_kind", None)
        if kind == "dense":
            return cpu_quant.dense_scaled_mm(q, scale, layer.cpu_weight, dtype, layer.bias)
        if kind == "int_mm":
            return cpu_quant.int8_int_mm(q, scale, layer.weight.t(), layer.cpu_scale, dtype, layer.bias)
        return kernels.scaled_mm(q, layer.weight, scale, layer.weight_scale, dtype, layer.bias)


class BlockScaledMMMethod(LinearMethod):
    """FP8 weights [N, K] with a scale per block of rows x columns (DeepSeek-V3's 128 x 128),
    FP8 activations quantized per token and group of the block's width on every call. The block
    scales are repeated over their rows at load ([N, K / width]): a fused layer's shards need
    not start on a block, and the kernel reads each row's scales directly."""

    def __init__(self, scheme: Scheme) -> None:
        self.block_rows, self.group = scheme.block_rows, scheme.group_size

    def create_weights(self, layer: Linear, dtype: torch.dtype) -> None:
        n, k = layer.out_features, layer.in_features
        if k % self.group or self.group % 16:
            raise UnsupportedModelError(
                f"FP8 block weights: in_features {k} is not a multiple of the block width {self.group}, "
                "or the width is not a multiple of 16"
            )
        layer.weight = nn.Parameter(torch.empty(n, k, dtype=torch.float8_e4m3fn), requires_grad=False)
        layer.weight_scale = nn.Parameter(torch.empty(n, k // self.group, dtype=torch.float32), requires_grad=False)
        layer.cpu_dtype = dtype

    def load_weight(self, layer: Linear, name: str, tensor: torch.Tensor, shard: int | None) -> None:
        if name == "weight":
            return _copy_codes(layer, tensor, shard, torch.float8_e4m3fn)
        if name == "weight_scale":
            rows = layer.output_slice(layer.weight_scale, shard)
            if tensor.shape != (-(-rows.shape[0] // self.block_rows), rows.shape[1]):
                raise ValueError(
                    f"{name}: shape {tuple(tensor.shape)} is not one scale per {self.block_rows} x {self.group} "
                    f"block of a {rows.shape[0]} x {layer.in_features} weight"
                )
            return copy_weight(rows, tensor.repeat_interleave(self.block_rows, dim=0)[: rows.shape[0]], name)
        raise KeyError(f"unexpected tensor {name!r} for an FP8 block quantized linear layer")

    def process_weights_after_loading(self, layer: Linear) -> None:
        layer.cpu_kind = None  # the Triton kernel on CUDA, the reference twin on CPU
        if layer.weight.device.type != "cpu" or cpu_quant.cpu_plan() == "reference":
            return
        # no CPU has FP8 math: the weight is dequantized once, in the compute dtype
        dense = dequantize_groups(layer.weight.data, layer.weight_scale.data).to(layer.cpu_dtype).contiguous()
        layer.register_buffer("cpu_weight", dense, persistent=False)
        layer.cpu_kind = "dense"

    def apply(self, layer: Linear, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        m, k = x2.shape
        # per token and group: the per-token quantization of each group as a row of its own
        q, scale = kernels.quantize_per_token(x2.reshape(m * k // self.group, self.group), torch.float8_e4m3fn)
        q, scale = q.view(m, k), scale.view(m, k // self.group)
        if getattr(layer, "cpu_kind", None) == "dense":
            a = (q.float().view(-1, self.group) * scale.view(-1, 1)).view(m, k).to(layer.cpu_weight.dtype)
            bias = None if layer.bias is None else layer.bias.to(a.dtype)
            out = F.linear(a, layer.cpu_weight, bias).to(x.dtype)
        else:
            out = kernels.block_scaled_mm(q, layer.weight, scale, layer.weight_scale, x.dtype, layer.bias)
        return out.view(*x.shape[:-1], out.shape[-1])


class FP4DecodedMethod(LinearMethod):
    """FP4 E2M1 weights, two to a byte, with 16-bit activations (NVFP4A16, MXFP4A16). No GPU the
    engine runs on has FP4 math (sm_100 brings it) and no CPU does: each checkpoint shard is
    decoded once at load by compressed-tensors' own decompressor (the values transformers
    computes with) into the compute dtype, and the layer runs dense, without the memory saving."""

    def __init__(self, scheme: Scheme) -> None:
        self.format, self.group = scheme.format, scheme.group_size

    def create_weights(self, layer: Linear, dtype: torch.dtype) -> None:
        n, k = layer.out_features, layer.in_features
        if k % self.group:
            raise UnsupportedModelError(
                f"FP4 weights: in_features {k} is not a multiple of the group size {self.group}"
            )
        nv = self.format == "nvfp4-pack-quantized"
        layer.weight_packed = nn.Parameter(torch.empty(n, k // 2, dtype=torch.uint8), requires_grad=False)
        scale_dtype = torch.float8_e4m3fn if nv else torch.uint8
        layer.weight_scale = nn.Parameter(torch.empty(n, k // self.group, dtype=scale_dtype), requires_grad=False)
        if nv:  # one per checkpoint shard
            layer.weight_global_scale = nn.Parameter(torch.empty(len(layer.output_sizes)), requires_grad=False)
        layer.cpu_dtype = dtype

    def load_weight(self, layer: Linear, name: str, tensor: torch.Tensor, shard: int | None) -> None:
        if name == "weight_global_scale" and hasattr(layer, name):
            i = shard or 0
            return copy_weight(layer.weight_global_scale[i : i + 1], tensor.float().reshape(1), name)
        if name not in ("weight_packed", "weight_scale"):
            raise KeyError(f"unexpected tensor {name!r} for an FP4 ({self.format}) linear layer")
        param = getattr(layer, name)
        if tensor.dtype != param.dtype:
            raise ValueError(f"{name}: checkpoint dtype {tensor.dtype} is not {self.format}'s {param.dtype}")
        copy_weight(layer.output_slice(param, shard), tensor, name)

    def process_weights_after_loading(self, layer: Linear) -> None:
        from compressed_tensors.compressors.base import BaseCompressor
        from compressed_tensors.quantization import preset_name_to_scheme

        nv = self.format == "nvfp4-pack-quantized"
        compressor = BaseCompressor.get_value_from_registry(self.format)
        scheme = preset_name_to_scheme("NVFP4A16" if nv else "MXFP4A16", ["Linear"])
        dense = torch.empty(
            layer.out_features, layer.in_features, dtype=layer.cpu_dtype, device=layer.weight_packed.device
        )
        for i in range(len(layer.output_sizes)):
            state = {name: layer.output_slice(getattr(layer, name), i) for name in ("weight_packed", "weight_scale")}
            if nv:
                state["weight_global_scale"] = layer.weight_global_scale[i : i + 1]
            layer.output_slice(dense, i).copy_(compressor.decompress(state, scheme)["weight"])
        del layer.weight_packed, layer.weight_scale
        if nv:
            del layer.weight_global_scale
        layer.weight = nn.Parameter(dense, requires_grad=False)

    def apply(self, layer: Linear, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, layer.weight, layer.bias)


@dataclass(frozen=True)
class QuantizedActivation:
    """Activations [tokens, K] already quantized per token for a `ScaledMMMethod` layer, and the
    dtype its output takes."""

    q: torch.Tensor
    scale: torch.Tensor  # [tokens, 1] float32
    dtype: torch.dtype


def fuse_input_quantization(model: nn.Module) -> int:
    """Makes the kernel in front of each W8A8 / FP8 layer quantize its output for it, sparing a
    quantize pass per layer input: the RMSNorms before qkv and gate/up, the SiLU-and-mul before
    down_proj (o_proj's input comes out of attention and is quantized by the layer). Returns how
    many it changed."""
    fused = 0
    for layer in model.model.layers:
        mlp = layer.mlp
        # Gemma's norm in front of the MLP is its pre-feedforward one (the post-attention norm
        # feeds that), and its GeGLU has no quantizing kernel: down_proj quantizes its own input
        mlp_norm = layer.pre_feedforward_layernorm if layer.gemma else layer.post_attention_layernorm
        pairs = [(layer.input_layernorm, layer.self_attn.qkv_proj), (mlp_norm, mlp.gate_up_proj)]
        if hasattr(mlp.act, "quant") and mlp.down_proj.in_features <= kernels.FUSED_QUANT_MAX_COLS:
            pairs.append((mlp.act, mlp.down_proj))
        for producer, linear in pairs:
            # the native CPU kernel quantizes its input itself, in one pass over it
            # and a static scale is the layer's own
            method = linear.method
            if (
                isinstance(method, ScaledMMMethod)
                and not method.static
                and getattr(linear, "cpu_kind", None) != "native"
            ):
                producer.quant = linear.method.qdtype
                fused += 1
    return fused


class Sparse24Method(DenseLinearMethod):
    """A dense weight with two non-zeros in every four along K, held as a semi-structured
    sparse tensor (cuSPARSELt or CUTLASS kernels, half the multiply-adds)."""

    def apply(self, layer: Linear, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        out = F.linear(x2, layer.weight, layer.bias)
        return out.view(*x.shape[:-1], out.shape[-1])


def is_two_of_four(weight: torch.Tensor) -> bool:
    """At most two non-zeros in each group of four consecutive inputs of every row."""
    if weight.shape[-1] % 4:
        return False
    return bool(((weight.reshape(-1, 4) != 0).sum(dim=-1) <= 2).all())


def two_of_four_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """PyTorch's semi-structured sparse kernels: CUDA compute capability 8.0+, fp16 / bf16."""
    return (
        device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
        and torch.cuda.get_device_capability(device) >= (8, 0)
    )  # fmt: skip


def sparsify_two_of_four(model: nn.Module) -> list[str]:
    """Turns every dense Linear whose weight is 2:4 sparse (compress's 2of4 presets save them
    dense) into a `Sparse24Method` layer. Returns the names of the layers it turned."""
    from torch.sparse import to_sparse_semi_structured

    turned = []
    for name, module in model.named_modules():
        if not isinstance(module, Linear) or type(module.method) is not DenseLinearMethod:
            continue
        w = module.weight
        if not two_of_four_supported(w.device, w.dtype) or not is_two_of_four(w):
            continue
        try:
            sparse = to_sparse_semi_structured(w.data)
        except (RuntimeError, ValueError):
            continue  # a shape the sparse kernels refuse (too small, not a multiple of their tile)
        module.weight = nn.Parameter(sparse, requires_grad=False)
        module.method = Sparse24Method()
        turned.append(name)
    return turned
