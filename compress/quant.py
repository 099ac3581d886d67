"""Quantization arithmetic: qparams, weight quantize/dequantize, dynamic activation fake-quant.

The conventions are compressed-tensors' (so that what we compute is exactly what it packs and
what transformers / vLLM dequantize): symmetric int scale = max|w| / ((qmax - qmin) / 2)
(int4: /7.5, int8: /127.5), q = clamp(round(w / s + z)), w' = (q - z) * s, FP8 E4M3 by a cast
after scaling into [-448, 448]. `fake_quantize_activation` is our twin of compressed-tensors'
dynamic per-token activation quantization, op for op, so logits can be compared exactly.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import fake_quantize as ct_fake_quantize
from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam

FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


@dataclass
class QuantizedWeight:
    """A Linear's weight after quantization. `q` holds the codes (int8 or float8_e4m3fn);
    `dequant` is (q - zero_point) * scale in float32, exact for these small codes."""

    q: torch.Tensor
    scale: torch.Tensor  # stored dtype (the model's), shape as compressed-tensors expects
    zero_point: torch.Tensor | None  # int8 codes for asymmetric int, else None
    dequant: torch.Tensor  # float32 [out, in]
    input_scale: torch.Tensor | None = None  # static activation quantization: [1], stored dtype
    global_scale: torch.Tensor | None = None  # NVFP4: [1] float32, the group scales' divisor


def check_supported(scheme: QuantizationScheme, where: str) -> None:
    """Raise a clear error for schemes whose algorithms or formats we do not implement."""
    w, a = scheme.weights, scheme.input_activations
    if w is None:
        raise NotImplementedError(f"{where}: activation-only schemes are not supported")
    if w.type == "int" and not 2 <= w.num_bits <= 8:
        raise NotImplementedError(f"{where}: int weights need 2..8 bits, got {w.num_bits}")
    if is_fp4(w):
        if a is not None:
            raise NotImplementedError(
                f"{where}: FP4 weights are supported with 16-bit activations (NVFP4A16, MXFP4A16); FP4 activations "
                "(NVFP4, MXFP4) are not supported yet"
            )
        return
    if w.type == "float" and w.num_bits != 8:
        raise NotImplementedError(
            f"{where}: float weights are FP8, or FP4 as NVFP4A16 (group 16 over a global scale) or MXFP4A16 "
            f"(group 32, E8M0 scales); not {w.num_bits}-bit {w.strategy} groups of {w.group_size}"
        )
    if w.strategy not in ("group", "channel", "tensor", "block"):
        raise NotImplementedError(
            f"{where}: weight strategy {w.strategy!r} is not supported (group, channel, tensor, block are)"
        )
    if w.strategy == "block" and (w.type != "float" or len(w.block_structure or []) != 2):
        raise NotImplementedError(f"{where}: block weights are supported for FP8 with a [rows, cols] block_structure")
    if w.type == "float" and not w.symmetric:
        raise NotImplementedError(f"{where}: asymmetric FP8 weights are not supported")
    if w.dynamic:
        raise NotImplementedError(f"{where}: dynamic weight quantization is not supported")
    static = a is not None and a.dynamic is False and a.strategy == "tensor"
    if a is not None and not (a.symmetric and (static or (a.dynamic is True and a.strategy in ("token", "group")))):
        raise NotImplementedError(
            f"{where}: input activations must be symmetric, dynamic per token (or per token group) or static "
            f"per tensor (e.g. W8A8, FP8_DYNAMIC, FP8_BLOCK, FP8)"
        )
    if a is not None and a.strategy == "group" and not (w.strategy == "block" and a.group_size == w.block_structure[1]):
        raise NotImplementedError(
            f"{where}: per-token-group activations are supported with block weights whose block width is the group "
            "size (FP8_BLOCK)"
        )
    if a is not None and not (a.type == w.type and a.num_bits == 8):
        raise NotImplementedError(f"{where}: input activations must be int8 with int weights or FP8 with FP8 weights")
    if scheme.output_activations is not None:
        raise NotImplementedError(f"{where}: output activation quantization is not supported")


def is_fp4(args: QuantizationArgs) -> bool:
    """FP4 E2M1 weights in compressed-tensors' two layouts: NVFP4 (groups of 16, FP8 scales over
    a per-tensor global scale) and MXFP4 (groups of 32, power-of-two E8M0 scales)."""
    return (
        args.type == "float" and args.num_bits == 4 and args.symmetric
        and (args.strategy, args.group_size) in (("tensor_group", 16), ("group", 32))
    )  # fmt: skip


def fp4_global_scale(w: torch.Tensor) -> torch.Tensor:
    """NVFP4's per-tensor scale: maps the tensor's largest |w| to FP8's largest scale times FP4's largest code."""
    return generate_gparam(w.float().amin(), w.float().amax())


def quantize_fp4(w: torch.Tensor, args: QuantizationArgs, global_scale: torch.Tensor | None) -> QuantizedWeight:
    """Round-to-nearest FP4 by compressed-tensors' own qparams and quantizer (NVFP4 needs
    `global_scale`; several Linears that the engine fuses share one, as vLLM requires)."""
    g = _grouped(w.float(), args)
    scale, _ = calculate_qparams(g.amin(dim=-1), g.amax(dim=-1), args, global_scale=global_scale)
    q = ct_quantize(w.float(), scale, None, args, dtype=torch.float32, global_scale=global_scale)
    dequant = ct_fake_quantize(w.float(), scale, None, args, global_scale=global_scale)
    return QuantizedWeight(q, scale, None, dequant, global_scale=global_scale)


def _grouped(w: torch.Tensor, args: QuantizationArgs) -> torch.Tensor:
    """View [out, in] as [out, groups, group_size] (channel: one group, tensor: everything;
    block: [row blocks, column blocks, block elements], ragged edges padded with zeros, which
    change no block's range since the range always takes in zero)."""
    if args.strategy == "block":
        bh, bw = args.block_structure
        rows, cols = -(-w.shape[0] // bh), -(-w.shape[1] // bw)
        w = F.pad(w, (0, cols * bw - w.shape[1], 0, rows * bh - w.shape[0]))
        return w.reshape(rows, bh, cols, bw).transpose(1, 2).flatten(2)
    if args.strategy in ("group", "tensor_group"):
        return w.unflatten(-1, (w.shape[-1] // args.group_size, args.group_size))
    if args.strategy == "channel":
        return w.unsqueeze(1)
    return w.reshape(1, 1, -1)


MSE_OBSERVERS = ("mse", "memoryless_mse")


def compute_qparams(
    w: torch.Tensor, args: QuantizationArgs, scale_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Qparams for a float32 weight [out, in] from each group's min/max or, with the "mse"
    observer, from the min/max shrunk by the factor (1, 1 - 1/grid, ... 1 - maxshrink) that
    minimises sum |w - q(w)|^norm (llm-compressor's observer_kwargs, defaults 100, 0.2, 2.4).
    The scale is rounded to the dtype it is stored in before anything uses it, so quantization
    and the checkpoint agree bit for bit. Returns scale [out, groups] ([out, 1] channel, [1]
    tensor) and int8 zero points or None (block: scale [row blocks, column blocks])."""
    g = _grouped(w.float(), args)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale, zp = _qparams(lo, hi, args, scale_dtype)
    if args.observer in MSE_OBSERVERS:
        kw = args.observer_kwargs or {}
        grid, maxshrink, norm = (
            float(kw.get("grid", 100.0)),
            float(kw.get("maxshrink", 0.2)),
            float(kw.get("norm", 2.4)),
        )
        best = _group_error(g, scale, zp, args, norm)
        for i in range(1, int(maxshrink * grid) + 1):
            s, z = _qparams(lo * (1 - i / grid), hi * (1 - i / grid), args, scale_dtype)
            err = _group_error(g, s, z, args, norm)
            better = err < best
            best = torch.where(better, err, best)
            scale = torch.where(better, s, scale)
            zp = torch.where(better, z, zp) if zp is not None else None
    if args.strategy == "tensor":
        scale, zp = scale.reshape(1), zp.reshape(1) if zp is not None else None
    return scale, zp


def _qparams(lo, hi, args, scale_dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    scale, zp = calculate_qparams(lo, hi, args)
    scale = scale.to(scale_dtype)
    if args.type == "float" or args.symmetric:
        return scale, None
    return scale, torch.round(zp.float()).to(torch.int8)


def _group_error(g, scale, zp, args, norm) -> torch.Tensor:
    _, deq = quantize_values(g, scale.float().unsqueeze(-1), None if zp is None else zp.float().unsqueeze(-1), args)
    return (deq - g).abs().pow(norm).sum(dim=-1)


def expand_qparams(t: torch.Tensor | None, args: QuantizationArgs, shape: torch.Size) -> torch.Tensor | None:
    """Broadcast per-group qparams to one value per weight element, as float32."""
    if t is None:
        return None
    t = t.float()
    if args.strategy == "block":
        bh, bw = args.block_structure
        return t.repeat_interleave(bh, dim=0).repeat_interleave(bw, dim=1)[: shape[0], : shape[1]]
    if args.strategy == "group":
        return t.repeat_interleave(args.group_size, dim=-1)
    return t.expand(shape) if args.strategy == "channel" else t.reshape(1, 1).expand(shape)


def quantize_values(
    w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, args: QuantizationArgs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize float32 `w` with float32 `scale` / `zero_point` of the same (or broadcastable)
    shape. Returns (codes as float32, dequantized float32)."""
    x = w / scale
    if args.type == "float":
        q = x.clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float()
        return q, q * scale
    if zero_point is not None:
        x = x + zero_point
    lo, hi = -(2 ** (args.num_bits - 1)), 2 ** (args.num_bits - 1) - 1
    q = torch.round(x).clamp_(lo, hi)
    deq = (q - zero_point) * scale if zero_point is not None else q * scale
    return q, deq


def quantize_weight(w: torch.Tensor, args: QuantizationArgs, scale_dtype: torch.dtype) -> QuantizedWeight:
    """Round-to-nearest with min/max qparams."""
    w = w.float()
    scale, zp = compute_qparams(w, args, scale_dtype)
    q, deq = quantize_values(w, expand_qparams(scale, args, w.shape), expand_qparams(zp, args, w.shape), args)
    return QuantizedWeight(codes(q, args), scale, zp, deq)


def codes(q: torch.Tensor, args: QuantizationArgs) -> torch.Tensor:
    """Float32 codes in their storage dtype (exact: they are already on the grid)."""
    return q.to(torch.float8_e4m3fn if args.type == "float" else torch.int8)


def fake_quantize_activation(
    x: torch.Tensor, args: QuantizationArgs, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric quantize-dequantize, in x's dtype, in the same order of operations as
    compressed-tensors (so the result matches it exactly): dynamic per token (or per token
    group), or static with the calibrated per-tensor `scale`."""
    if not args.dynamic:
        if scale is None:
            raise ValueError("static activation quantization needs its calibrated scale")
        return _quantize_dequantize(x, scale, args)
    if args.strategy == "group":
        groups = x.unflatten(-1, (x.shape[-1] // args.group_size, args.group_size))
        return _fake_quantize_rows(groups, args).flatten(-2)
    return _fake_quantize_rows(x, args)


def _code_range(args: QuantizationArgs) -> tuple[float, float]:
    if args.type == "float":
        return -FP8_MAX, FP8_MAX
    return -(2.0 ** (args.num_bits - 1)), 2.0 ** (args.num_bits - 1) - 1


def _fake_quantize_rows(x: torch.Tensor, args: QuantizationArgs) -> torch.Tensor:
    lo = torch.clamp(x.amin(dim=-1, keepdim=True), max=0)
    hi = torch.clamp(x.amax(dim=-1, keepdim=True), min=0)
    qmin, qmax = _code_range(args)
    half_range = torch.tensor(qmax - qmin, device=x.device).to(x.dtype) / 2
    scale = torch.maximum(lo.abs(), hi.abs()) / half_range
    scale = torch.where(
        scale == 0, torch.tensor(torch.finfo(scale.dtype).eps, dtype=scale.dtype, device=x.device), scale
    )
    return _quantize_dequantize(x, scale, args)


def _quantize_dequantize(x: torch.Tensor, scale: torch.Tensor, args: QuantizationArgs) -> torch.Tensor:
    qmin, qmax = _code_range(args)
    y = torch.clamp(x / scale, torch.tensor(qmin, device=x.device), torch.tensor(qmax, device=x.device))
    y = y.to(torch.float8_e4m3fn).to(x.dtype) if args.type == "float" else torch.round(y)
    # a static scale is stored in the checkpoint's dtype, which need not be x's
    return (y.to(scale.dtype) * scale).to(x.dtype)


def static_input_scale(lo: torch.Tensor, hi: torch.Tensor, args: QuantizationArgs, dtype: torch.dtype) -> torch.Tensor:
    """A static per-tensor activation scale from the smallest and largest input seen in
    calibration (compressed-tensors' qparams, as its "static_minmax" observer gives them),
    rounded to the dtype it is stored in: [1]."""
    scale, _ = calculate_qparams(lo.float().reshape(1), hi.float().reshape(1), args)
    return scale.to(dtype).reshape(1)


def attach_activation_quant(
    modules: dict[str, torch.nn.Module],
    schemes: dict[str, QuantizationScheme],
    input_scales: dict[str, torch.Tensor] | None = None,
) -> list:
    """Fake-quantize the inputs of the Linears whose scheme quantizes input activations (the
    static ones with their scale from `input_scales`). Returns the hook handles (remove them
    to detach)."""
    handles = []
    for name, module in modules.items():
        act = schemes[name].input_activations if name in schemes else None
        if act is not None:
            scale = None if act.dynamic else (input_scales or {})[name].to(module.weight.device)
            handles.append(
                module.register_forward_pre_hook(
                    lambda m, a, act=act, scale=scale: (fake_quantize_activation(a[0], act, scale),)
                )
            )
    return handles
