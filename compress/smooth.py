"""Output-preserving channel rescaling before quantization: SmoothQuant and AWQ.

A mapping pairs a "smooth" module (an RMSNorm, or a Linear whose output feeds the others)
with the "balance" Linears that read its output. Dividing the smooth module's output channels
by s and multiplying the balance weights' input columns by s leaves the function unchanged
in exact arithmetic while moving the quantization difficulty between activations and weights.

- SmoothQuant (Xiao et al., 2022, arXiv:2211.10438): s = max|x|^a / max|W|^(1-a).
- AWQ (Lin et al., 2023, arXiv:2306.00978): s = mean|x|^r (/ mean normalised |W|^(1-r) with
  duo scaling), r chosen on a grid by the output error of the parent module when the balance
  weights are fake-quantized with their scheme.
"""

from dataclasses import dataclass

import torch
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.utils.match import get_lowest_common_ancestor_name, match_name

from compress.quant import quantize_weight

# llm-compressor's default mappings for the Llama family (Llama, Mistral, Qwen2, Qwen3):
# (smooth module, balance modules).
SMOOTHQUANT_MAPPINGS = [
    ("re:.*input_layernorm$", ["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]),
    ("re:.*post_attention_layernorm$", ["re:.*gate_proj$", "re:.*up_proj$"]),
]
AWQ_MAPPINGS = [
    ("re:.*input_layernorm$", ["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]),
    ("re:.*v_proj$", ["re:.*o_proj$"]),
    ("re:.*post_attention_layernorm$", ["re:.*gate_proj$", "re:.*up_proj$"]),
    ("re:.*up_proj$", ["re:.*down_proj$"]),
]
# Gemma 2 / 3: the post-attention norm's output joins the residual stream, and the MLP reads the
# pre-feedforward norm's
_GEMMA = {"re:.*post_attention_layernorm$": "re:.*pre_feedforward_layernorm$"}
_GEMMA_TYPES = ("gemma2", "gemma3", "gemma3_text")
# RMSNorms that scale by (1 + weight)
_UNIT_OFFSET_NORMS = ("GemmaRMSNorm", "Gemma2RMSNorm", "Gemma3RMSNorm")


def default_mappings(algorithm: str, model_type: str) -> list[tuple[str, list[str]]]:
    """The mappings a SmoothQuant or AWQ step uses when its recipe names none."""
    mappings = AWQ_MAPPINGS if algorithm == "awq" else SMOOTHQUANT_MAPPINGS
    if model_type in _GEMMA_TYPES:
        return [(_GEMMA.get(smooth, smooth), balance) for smooth, balance in mappings]
    return mappings


@dataclass
class Mapping:
    smooth_name: str
    smooth: torch.nn.Module
    balance_names: list[str]
    balance: list[torch.nn.Linear]
    parent_name: str
    parent: torch.nn.Module


def resolve_mappings(
    layer: torch.nn.Module, prefix: str, specs: list[tuple[str, list[str]]], ignore: list[str] = ()
) -> tuple[list[Mapping], list[str]]:
    """Find each mapping's modules inside one decoder layer (names are `prefix.` + local name).
    Returns the mappings and notes on those skipped (absent, ignored, or shape mismatch, e.g.
    v_proj -> o_proj under grouped-query attention)."""
    named = {f"{prefix}.{n}": m for n, m in layer.named_modules() if n}
    mappings, notes = [], []
    for smooth_pat, balance_pats in specs:
        smooth = [n for n in named if match_name(n, smooth_pat)]
        if not smooth:
            continue
        if len(smooth) > 1:
            raise ValueError(f"smooth layer pattern {smooth_pat!r} matches several modules in {prefix}: {smooth}")
        smooth_name = smooth[0]
        if any(match_name(smooth_name, pat) for pat in ignore):
            continue
        balance_names = [n for pat in balance_pats for n in named if match_name(n, pat)]
        if not balance_names or not all(isinstance(named[n], torch.nn.Linear) for n in balance_names):
            raise ValueError(f"balance layers {balance_pats} for {smooth_name} must match Linear modules in {prefix}")
        width = _out_channels(named[smooth_name])
        if any(named[n].in_features != width for n in balance_names):
            notes.append(
                f"{smooth_name} -> {balance_names}: skipped, {width} output channels do not feed the inputs 1:1"
            )
            continue
        parent_name = get_lowest_common_ancestor_name(balance_names)
        parent = named.get(parent_name, layer)
        mappings.append(
            Mapping(
                smooth_name, named[smooth_name], balance_names, [named[n] for n in balance_names], parent_name, parent
            )
        )
    return mappings, notes


def _out_channels(module: torch.nn.Module) -> int:
    return module.out_features if isinstance(module, torch.nn.Linear) else module.weight.shape[0]


@torch.no_grad()
def apply_scales(mapping: Mapping, s: torch.Tensor) -> None:
    """Divide the smooth module's output channels by s and scale the balance inputs by s."""
    smooth = mapping.smooth
    s = s.to(smooth.weight.dtype)
    if isinstance(smooth, torch.nn.Linear):
        smooth.weight.div_(s.unsqueeze(1))
        if smooth.bias is not None:
            smooth.bias.div_(s)
    elif type(smooth).__name__ in _UNIT_OFFSET_NORMS:  # (1 + w) / s = 1 + ((1 + w) / s - 1)
        smooth.weight.copy_((1 + smooth.weight.float()).div_(s.float()).sub_(1).to(smooth.weight.dtype))
    else:
        smooth.weight.div_(s)
        if getattr(smooth, "bias", None) is not None:
            smooth.bias.div_(s)
    for lin in mapping.balance:
        lin.weight.mul_(s.to(lin.weight.dtype).unsqueeze(0))


def smoothquant_scales(act_max: torch.Tensor, balance: list[torch.nn.Linear], strength: float) -> torch.Tensor:
    w_max = torch.cat([b.weight.abs() for b in balance]).amax(dim=0).float()
    s = act_max.float().pow(strength) / w_max.pow(1 - strength)
    # an input channel with all-zero weights gives no information: leave it alone
    s = torch.where(w_max > 0, s, torch.ones_like(s))
    return s.clamp(min=1e-5)


def _parent_output(parent: torch.nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    out = parent(*args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def awq_search(
    mapping: Mapping,
    x_mean: torch.Tensor,
    parent_inputs: list[tuple[tuple, dict]],
    weight_args: list[QuantizationArgs],
    *,
    n_grid: int,
    duo_scaling: bool | str,
) -> tuple[torch.Tensor, float]:
    """Grid-search the AWQ scales of one mapping. Returns (best scales, relative output MSE).
    The balance weights are left as they were."""
    originals = [b.weight.detach().clone() for b in mapping.balance]
    reference = [_parent_output(mapping.parent, a, k) for a, k in parent_inputs]
    ref_power = sum(r.float().square().mean().item() for r in reference) or 1.0

    w_norm = []
    for w, args in zip(originals, weight_args):
        g = w.abs().float()
        g = g.unflatten(1, (-1, args.group_size)) if args.strategy == "group" else g.unsqueeze(1)
        w_norm.append((g / g.amax(dim=-1, keepdim=True).clamp(min=1e-12)).flatten(1))
    w_mean = torch.cat(w_norm).mean(dim=0)
    x_mean = x_mean.float()

    if duo_scaling == "both":
        half = max(n_grid // 2, 1)
        grid = [(i / half, False) for i in range(half)] + [(i / half, True) for i in range(half)]
    else:
        grid = [(i / n_grid, bool(duo_scaling)) for i in range(n_grid)]

    # the search ranks scales with plain min/max ranges (an mse observer would cost ~20x here)
    search_args = [a.model_copy(update={"observer": None}) for a in weight_args]
    best, best_s = float("inf"), torch.ones_like(x_mean)
    for ratio, duo in grid:
        s = x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4) if duo else x_mean.pow(ratio)
        s = s.clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        for lin, w, args in zip(mapping.balance, originals, search_args):
            deq = quantize_weight(w.float() * s, args, w.dtype).dequant / s
            lin.weight.copy_(deq.to(w.dtype))
        err = sum(
            (_parent_output(mapping.parent, a, k).float() - r.float()).square().mean().item()
            for (a, k), r in zip(parent_inputs, reference)
        )
        if err < best:
            best, best_s = err, s.clone()
    for lin, w in zip(mapping.balance, originals):
        lin.weight.copy_(w)
    return best_s, best / ref_power
