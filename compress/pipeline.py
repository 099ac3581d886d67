"""Layer-by-layer (sequential) compression.

The calibration tokens go through the embeddings once; from then on one decoder layer at a
time is moved to the device, calibrated and compressed, and its outputs, computed with the
compressed weights (and quantized activations), become the next layer's inputs. The device
holds one decoder layer plus the calibration activations. Where the weights live is the
`weights` object's business: a model already in memory (`InMemory`) stays on the CPU in its
own dtype; a `compress.lazy.LazyCheckpoint` reads each module from disk just before it is
used and `layer_done` (writing the layer out) runs before it is released. Forward passes run
in the dtype inference computes in (`common.dtypes`: the model's, or float32 for
half-precision models on a CPU without native bf16); Hessians, statistics and solves are float32.
"""

import ctypes
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

import torch
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.utils.match import match_named_modules

from common.dtypes import compute_dtype
from common.support import fitting_group_size
from common.work import CancelCheck, Cancelled, Progress
from compress.gptq import gptq_quantize
from compress.quant import (
    QuantizedWeight,
    attach_activation_quant,
    fp4_global_scale,
    is_fp4,
    quantize_fp4,
    quantize_weight,
    static_input_scale,
)
from compress.recipe import PruneStep, QuantizeStep, Recipe, SmoothStep
from compress.smooth import apply_scales, awq_search, default_mappings, resolve_mappings, smoothquant_scales
from compress.sparse import magnitude_prune, sparsegpt_prune

_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
TOKENS_PER_BATCH = 8192  # calibration tokens per forward pass
AWQ_MAX_TOKENS = 65536  # tokens whose activations AWQ keeps for its grid search (AutoAWQ: 128 x 512)


@dataclass
class Plan:
    layers: torch.nn.ModuleList
    prefix: str  # "model.layers"
    quant: dict[str, tuple[QuantizeStep, QuantizationScheme]]
    prune: dict[str, PruneStep]
    notes: list[str] = field(default_factory=list)

    def layer_of(self, name: str) -> int:
        return int(name[len(self.prefix) + 1 :].split(".", 1)[0])


@dataclass
class LayerReport:
    index: int
    seconds: float
    output_rel_error: float | None  # ||y - y_ref|| / ||y_ref|| on the first calibration batch
    modules: dict[str, dict[str, float]]


@dataclass
class RunResult:
    quantized: dict[str, QuantizedWeight]
    schemes: dict[str, QuantizationScheme]
    pruned: dict[str, dict]  # name -> {"structure", "sparsity"}
    layers: list[LayerReport]
    notes: list[str]
    resident_layers: int = 0  # the most decoder layers holding real tensors while one was compressed
    kv_cache: QuantizationArgs | None = None  # the KV cache's scheme, its scales on each attention module


class Weights(Protocol):
    """Where a module's tensors come from before it is used and go to after."""

    def load(self, module: torch.nn.Module, prefix: str) -> None: ...

    def release(self, module: torch.nn.Module) -> None: ...


class InMemory:
    """A model loaded whole: its modules keep their tensors."""

    def load(self, module: torch.nn.Module, prefix: str) -> None:
        pass

    def release(self, module: torch.nn.Module) -> None:
        pass


def find_decoder_layers(model: torch.nn.Module) -> tuple[torch.nn.ModuleList, str]:
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module, name
    raise NotImplementedError(f"{type(model).__name__}: could not find its {count} decoder layers")


def plan_model(model: torch.nn.Module, recipe: Recipe) -> Plan:
    """Resolve targets / ignore to Linear modules and check what the formats require. A preset's
    group size that does not divide every targeted input width falls back to 64, then 32."""
    layers, prefix = find_decoder_layers(model)
    plan = Plan(layers, prefix, {}, {})

    def matched(targets, ignore, where) -> list[tuple[str, torch.nn.Linear]]:
        out = []
        for name, module in match_named_modules(model, targets, ignore):
            if isinstance(module, torch.nn.Embedding):
                raise NotImplementedError(f"{where}: quantizing or pruning embeddings ({name}) is not supported")
            if not isinstance(module, torch.nn.Linear):
                continue
            if not name.startswith(prefix + "."):
                raise NotImplementedError(
                    f"{where}: {name} lies outside the decoder layers; compressing it is not supported, add it to `ignore`"
                )
            out.append((name, module))
        if not out:
            raise ValueError(f"{where}: targets {list(targets)} (ignore {list(ignore)}) match no Linear module")
        return out

    for step in recipe.steps:
        where = ".".join(step.source)
        if isinstance(step, QuantizeStep):
            for si, scheme in enumerate(step.schemes):
                modules = matched(scheme.targets, step.ignore, where)
                scheme = step.schemes[si] = _fit_group_size(scheme, modules, recipe, step, where, plan.notes)
                for name, _ in modules:
                    if name in plan.quant:
                        raise ValueError(f"{where}: {name} is already quantized by another scheme or modifier")
                    plan.quant[name] = (step, scheme)
        elif isinstance(step, PruneStep):
            for name, module in matched(step.targets, step.ignore, where):
                if name in plan.prune:
                    raise ValueError(f"{where}: {name} is pruned twice")
                if step.m and module.in_features % step.m:
                    raise ValueError(f"{where}: {name} has {module.in_features} inputs, not a multiple of {step.m}")
                plan.prune[name] = step
    return plan


def _fit_group_size(scheme, modules, recipe, step, where, notes) -> QuantizationScheme:
    """A group size (or an FP8 block's width, and its activation groups with it) that divides
    every targeted input width: compressed-tensors stores whole groups, and vLLM whole column blocks."""
    args = scheme.weights
    if args.strategy not in ("group", "block"):
        return scheme
    what = "group_size" if args.strategy == "group" else "block width"
    size = args.group_size if args.strategy == "group" else args.block_structure[1]
    widths = sorted({m.in_features for _, m in modules})
    fits = fitting_group_size(widths, size, fall_back=recipe.name is not None)
    if fits == size:
        return scheme
    bad = [w for w in widths if w % size]
    if fits is None:
        smaller = fitting_group_size(widths, size, fall_back=True)
        hint = f"{what} {smaller}" if smaller else "strategy: channel"
        raise ValueError(
            f"{where}: {what} {size} does not divide the input width(s) {bad} of targeted Linears "
            f"(compressed-tensors needs whole groups); use {hint}"
        )
    notes.append(f"{where}: {what} {size} does not divide input width(s) {bad}; used {what} {fits}")
    step.adjusted = True
    if args.strategy == "group":
        return scheme.model_copy(update={"weights": args.model_copy(update={"group_size": fits})})
    update = {"weights": args.model_copy(update={"block_structure": [args.block_structure[0], fits]})}
    acts = scheme.input_activations
    if acts is not None and acts.strategy == "group":
        update["input_activations"] = acts.model_copy(update={"group_size": fits})
    return scheme.model_copy(update=update)


class _Recorder(torch.nn.Module):
    """Stands in for a decoder layer while the embeddings run: records the layer's keyword
    arguments (masks, rotary embeddings) and passes the hidden states through."""

    def __init__(self, layer: torch.nn.Module, index: int, sink: Callable):
        super().__init__()
        self.index, self.sink = index, sink
        # some models pick each layer's mask by its attention type
        if hasattr(layer, "attention_type"):
            self.attention_type = layer.attention_type

    def forward(self, hidden_states, *args, **kwargs):
        if args:
            raise NotImplementedError("decoder layers called with positional arguments are not supported")
        self.sink(self.index, hidden_states, kwargs)
        return hidden_states


def _move(module: torch.nn.Module, device: torch.device | str, dtype: torch.dtype) -> None:
    """Move a module and cast its floating-point parameters (not its buffers: rotary inv_freq
    stays float32 as transformers keeps it)."""
    module.to(device)
    for p in module.parameters():
        if p.is_floating_point():
            p.data = p.data.to(dtype)


def _trim() -> None:
    """Hand freed heap memory back to the system. glibc keeps freed blocks below its mmap
    threshold (which grows to 32 MB) in its heap; a layer's many such temporaries would
    otherwise stay resident from one Hessian group, and one layer, to the next."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _forward(layer: torch.nn.Module, h: torch.Tensor, kwargs: dict) -> torch.Tensor:
    out = layer(h, **kwargs)
    return out[0] if isinstance(out, tuple) else out


class _Hessians:
    """Forward hooks that accumulate X^T X per Linear input. Linears that receive the very same
    input tensor (q/k/v, gate/up) share one accumulator."""

    def __init__(self, modules: dict[str, torch.nn.Linear]):
        self.sums: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self.leader: dict[str, str] = {}
        self._last: tuple[torch.Tensor, str] | None = None
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str):
        def hook(module, args, output):
            x = args[0]
            if self._last is not None and self._last[0] is x:
                self.leader.setdefault(name, self._last[1])
                return
            leader = self.leader.setdefault(name, name)
            x2 = x.reshape(-1, x.shape[-1]).float()
            if leader not in self.sums:
                self.sums[leader] = torch.zeros(x2.shape[1], x2.shape[1], device=x.device)
                self.tokens[leader] = 0
            self.sums[leader].addmm_(x2.T, x2)
            self.tokens[leader] += x2.shape[0]
            self._last = (x, leader)

        return hook

    def groups(self) -> dict[str, tuple[torch.Tensor, list[str]]]:
        """leader -> (H = 2/n X^T X, member names)."""
        for h in self.handles:
            h.remove()
        out = {}
        for leader, s in self.sums.items():
            out[leader] = (s.mul_(2 / self.tokens[leader]), [n for n, lead in self.leader.items() if lead == leader])
        return out


class Runner:
    def __init__(
        self,
        model: torch.nn.Module,
        recipe: Recipe,
        plan: Plan,
        device: torch.device,
        progress: Progress | None = None,
        cancelled: CancelCheck | None = None,
        weights: Weights | None = None,
        layer_done: Callable[[int, torch.nn.Module], None] | None = None,
    ):
        self.model, self.recipe, self.plan, self.device = model, recipe, plan, device
        kv = [s.kv_cache for s in recipe.steps if isinstance(s, QuantizeStep) and s.kv_cache is not None]
        self.kv_cache: QuantizationArgs | None = kv[0] if kv else None
        self.progress, self.cancelled = progress, cancelled
        self.weights, self.layer_done = weights or InMemory(), layer_done
        self.model_dtype = next(model.parameters()).dtype
        # forward passes run in the dtype inference computes in on this device
        self.dtype = getattr(torch, compute_dtype(str(self.model_dtype).removeprefix("torch."), device.type))
        self.result = RunResult({}, {}, {}, [], list(plan.notes), kv_cache=self.kv_cache)
        # the calibration activations entering the next layer, each layer's keyword arguments by
        # batch size, and the first batch's output of the layer being compressed (for its error)
        self.hidden: list[torch.Tensor] = []
        self.kwargs: list[dict[int, dict]] = [{} for _ in plan.layers]
        self.first_output: torch.Tensor | None = None
        self.masks: dict[str, torch.Tensor] = {}

    # calibration activations

    def capture(self, calib: torch.Tensor) -> None:
        """Embed the calibration batches and record each layer's keyword arguments."""
        batch = max(1, min(len(calib), TOKENS_PER_BATCH // calib.shape[1]))

        def sink(index, h, kwargs):
            if index == 0:
                self.hidden.append(h)
            self.kwargs[index].setdefault(h.shape[0], kwargs)

        layers = self.plan.layers
        base_name = self.plan.prefix.rsplit(".", 1)[0]
        base = self.model.get_submodule(base_name)
        originals = list(layers)
        others = {f"{base_name}.{n}": m for n, m in base.named_children() if m is not layers}
        for name, m in others.items():
            self.weights.load(m, name)
        handles = []
        try:
            for i, layer in enumerate(originals):
                layers[i] = _Recorder(layer, i, sink)
            for m in others.values():
                if isinstance(m, torch.nn.Embedding):
                    # the table (which can outweigh a decoder layer) stays in its dtype; casting what
                    # it looks up gives the same values
                    m.to(self.device)
                    handles.append(m.register_forward_hook(lambda module, args, out: out.to(self.dtype)))
                else:
                    _move(m, self.device, self.dtype)
            with torch.no_grad():
                for ids in calib.split(batch):
                    base(input_ids=ids.to(self.device), use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
            for i, layer in enumerate(originals):
                layers[i] = layer
            for m in others.values():
                _move(m, "cpu", self.model_dtype)
                self.weights.release(m)

    def kw(self, index: int, h: torch.Tensor) -> dict:
        return self.kwargs[index][h.shape[0]]

    def calibrate(self, index: int, layer: torch.nn.Module) -> None:
        """One pass over the calibration batches (hooks collect statistics). The first batch's
        output is kept: from the first pass over an unmodified layer it is the reference."""
        with torch.no_grad():
            for k, h in enumerate(self.hidden):
                out = _forward(layer, h, self.kw(index, h))
                if k == 0:
                    self.first_output = out

    # the loop

    def run(self, calib: torch.Tensor | None) -> RunResult:
        if calib is not None:
            self.capture(calib)
        n = len(self.plan.layers)
        for i, layer in enumerate(self.plan.layers):
            if self.cancelled is not None and self.cancelled():
                raise Cancelled(f"cancelled before decoder layer {i} of {n}")
            start = time.perf_counter()
            self.weights.load(layer, f"{self.plan.prefix}.{i}")
            resident = sum(any(not p.is_meta for p in m.parameters()) for m in self.plan.layers)
            self.result.resident_layers = max(self.result.resident_layers, resident)
            self.result.layers.append(self.compress_layer(i, layer, calib is not None))
            if self.layer_done is not None:
                self.layer_done(i, layer)
            self.weights.release(layer)
            _trim()
            self.result.layers[-1].seconds = time.perf_counter() - start
            if self.progress is not None:
                self.progress((i + 1) / n, f"layer {i + 1}/{n}")
        return self.result

    def compress_layer(self, i: int, layer: torch.nn.Module, data: bool) -> LayerReport:
        prefix = f"{self.plan.prefix}.{i}"
        linears = {f"{prefix}.{n}": m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        report = LayerReport(i, 0.0, None, {})
        _move(layer, self.device, self.dtype)
        reference = None
        with torch.no_grad():
            for step in self.recipe.steps:
                self.first_output = None
                # a step that runs the calibration batches keeps its first output as the reference
                calibrates = step.needs_data and not (isinstance(step, QuantizeStep) and step.algorithm == "rtn")
                if data and reference is None and not calibrates:
                    reference = _forward(layer, self.hidden[0], self.kw(i, self.hidden[0]))
                if isinstance(step, QuantizeStep):
                    self.quantize(
                        i,
                        step,
                        {n: m for n, m in linears.items() if self.plan.quant.get(n, (None,))[0] is step},
                        report,
                    )
                elif isinstance(step, PruneStep):
                    self.prune(i, step, {n: m for n, m in linears.items() if self.plan.prune.get(n) is step}, report)
                else:
                    self.smooth(i, layer, prefix, step)
                if reference is None:
                    reference = self.first_output
            # what the checkpoint will hold: every parameter rounded to the model's dtype
            _move(layer, self.device, self.model_dtype)
            if data:
                _move(layer, self.device, self.dtype)
                if reference is None:  # no step touched this layer
                    reference = _forward(layer, self.hidden[0], self.kw(i, self.hidden[0]))
                schemes = {n: self.plan.quant[n][1] for n in linears if n in self.plan.quant}
                static = {n: s.input_activations for n, s in schemes.items() if _static(s)}
                for n, (lo, hi) in self.observe_input_ranges(i, layer, {n: linears[n] for n in static}).items():
                    scale = static_input_scale(lo, hi, static[n], self.model_dtype)
                    self.result.quantized[n] = replace(self.result.quantized[n], input_scale=scale)
                    report.modules[n]["input_scale"] = scale.item()
                input_scales = {n: self.result.quantized[n].input_scale for n in static}
                handles = attach_activation_quant(linears, schemes, input_scales)
                kv_ranges: dict[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
                try:
                    last = i == len(self.plan.layers) - 1
                    # the KV cache's scales are calibrated on every batch, the last layer's too
                    hidden = self.hidden[:1] if last and self.kv_cache is None else self.hidden
                    with _observing_kv(self.model.config, kv_ranges, self.kv_cache is not None):
                        outputs = [_forward(layer, h, self.kw(i, h)) for h in hidden]
                finally:
                    for h in handles:
                        h.remove()
                for attention, (k_max, v_max) in kv_ranges.items():
                    for name, largest in (("k_scale", k_max), ("v_scale", v_max)):
                        scale = static_input_scale(-largest, largest, self.kv_cache, self.model_dtype)
                        setattr(attention, name, torch.nn.Parameter(scale.to(self.device), requires_grad=False))
                        report.modules.setdefault(f"{prefix}.self_attn", {})[name] = scale.item()
                report.output_rel_error = ((outputs[0] - reference).norm() / reference.norm()).item()
                if not last:
                    self.hidden = outputs
        _move(layer, "cpu", self.model_dtype)
        # a quantization step keeps pruned weights at zero within this layer only
        self.masks.clear()
        return report

    def observe_input_ranges(
        self, index: int, layer: torch.nn.Module, modules: dict[str, torch.nn.Linear]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The smallest and largest input each of `modules` sees over all calibration batches,
        with the layer's weights quantized and no activation quantized inside it."""
        ranges: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def observer(name: str):
            def hook(module, args):
                lo, hi = torch.aminmax(args[0].float())
                if name in ranges:
                    lo, hi = torch.minimum(ranges[name][0], lo), torch.maximum(ranges[name][1], hi)
                ranges[name] = (lo, hi)

            return hook

        if not modules:
            return ranges
        handles = [m.register_forward_pre_hook(observer(n)) for n, m in modules.items()]
        try:
            for h in self.hidden:
                _forward(layer, h, self.kw(index, h))
        finally:
            for handle in handles:
                handle.remove()
        return ranges

    # steps

    def _hessian_groups(self, i: int, modules: dict[str, torch.nn.Linear]):
        hessians = _Hessians(modules)
        self.calibrate(i, self.plan.layers[i])
        return hessians.groups()

    def quantize(self, i: int, step: QuantizeStep, modules: dict[str, torch.nn.Linear], report: LayerReport) -> None:
        if not modules:
            return
        if step.algorithm == "rtn":
            global_scales = _fused_global_scales(modules, {n: self.plan.quant[n][1].weights for n in modules})
            for name, m in modules.items():
                args = self.plan.quant[name][1].weights
                if is_fp4(args):
                    qw = quantize_fp4(m.weight, args, global_scales.get(name))
                else:
                    qw = quantize_weight(m.weight, args, self.model_dtype)
                self._store(name, m, qw, report)
            return
        groups = self._hessian_groups(i, modules)
        # the widest input first: its H and inverse are the layer's biggest working set, best met
        # before the other Linears' results pile up; each H is freed once its Linears are done
        for leader in sorted(groups, key=lambda n: -groups[n][0].shape[0]):
            _trim()
            h, names = groups.pop(leader)
            # rows are independent given H: Linears with one input and one scheme are solved stacked
            # (a per-tensor scale is per module, and a block's rows may straddle two modules, so
            # those are solved alone)
            stacks: dict[int | str, list[str]] = {}
            for name in names:
                scheme = self.plan.quant[name][1]
                alone = scheme.weights.strategy in ("tensor", "block")
                stacks.setdefault(name if alone else id(scheme), []).append(name)
            for group in stacks.values():
                # gptq_quantize works on a copy: one module needs none of its own
                w = modules[group[0]].weight if len(group) == 1 else torch.cat([modules[n].weight for n in group])
                keep_zero = None
                if any(n in self.masks for n in group):
                    keep_zero = torch.cat(
                        [self.masks.get(n, torch.zeros_like(modules[n].weight, dtype=torch.bool)) for n in group]
                    )
                qw, losses = gptq_quantize(
                    w,
                    h,
                    self.plan.quant[group[0]][1].weights,
                    self.model_dtype,
                    block_size=step.block_size,
                    dampening_frac=step.dampening_frac,
                    actorder=step.actorder,
                    keep_zero=keep_zero,
                )
                row = 0
                for n in group:
                    rows = slice(row, row + modules[n].out_features)
                    part = QuantizedWeight(
                        qw.q[rows], _rows(qw.scale, rows), _rows(qw.zero_point, rows), qw.dequant[rows]
                    )
                    self._store(n, modules[n], part, report)
                    report.modules[n]["gptq_loss"] = losses[rows].sum().item()
                    row = rows.stop

    def _store(self, name: str, module: torch.nn.Linear, qw: QuantizedWeight, report: LayerReport) -> None:
        w = module.weight.float()
        report.modules.setdefault(name, {})["weight_rel_error"] = ((qw.dequant - w).norm() / w.norm()).item()
        self.result.quantized[name] = replace(
            qw,
            q=qw.q.cpu(),
            scale=qw.scale.cpu(),
            zero_point=None if qw.zero_point is None else qw.zero_point.cpu(),
            dequant=qw.dequant.cpu(),
            global_scale=None if qw.global_scale is None else qw.global_scale.cpu(),
        )
        self.result.schemes[name] = self.plan.quant[name][1]
        module.weight.copy_(qw.dequant.to(self.model_dtype).to(module.weight.dtype))

    def prune(self, i: int, step: PruneStep, modules: dict[str, torch.nn.Linear], report: LayerReport) -> None:
        if not modules:
            return
        if step.algorithm == "magnitude":
            results = {
                n: magnitude_prune(m.weight, sparsity=step.sparsity, n=step.n, m=step.m) for n, m in modules.items()
            }
            losses = {}
        else:
            results, losses = {}, {}
            groups = self._hessian_groups(i, modules)
            for leader in list(groups):
                h, names = groups.pop(leader)
                w = torch.cat([modules[n].weight.float() for n in names])
                pruned, mask, loss = sparsegpt_prune(
                    w,
                    h,
                    sparsity=step.sparsity,
                    n=step.n,
                    m=step.m,
                    block_size=step.block_size,
                    dampening_frac=step.dampening_frac,
                )
                row = 0
                for n in names:
                    rows = slice(row, row + modules[n].out_features)
                    results[n] = (pruned[rows], mask[rows])
                    losses[n] = loss[rows].sum().item()
                    row = rows.stop
        for name, (w, mask) in results.items():
            module = modules[name]
            before = module.weight.float()
            module.weight.copy_(w.to(module.weight.dtype))
            self.masks[name] = mask
            stats = report.modules.setdefault(name, {})
            stats["sparsity"] = mask.float().mean().item()
            stats["prune_rel_error"] = ((w - before).norm() / before.norm()).item()
            if name in losses:
                stats["sparsegpt_loss"] = losses[name]
            self.result.pruned[name] = {"structure": step.structure, "sparsity": stats["sparsity"]}

    def smooth(self, i: int, layer: torch.nn.Module, prefix: str, step: SmoothStep) -> None:
        specs = (
            step.mappings
            if step.mappings is not None
            else default_mappings(step.algorithm, self.model.config.model_type)
        )
        mappings, notes = resolve_mappings(layer, prefix, specs, step.ignore)
        if step.algorithm == "awq":
            # AWQ searches against the quantization that follows; mappings onto unquantized layers are skipped
            kept = [m for m in mappings if all(n in self.plan.quant for n in m.balance_names)]
            notes += [
                f"{m.smooth_name}: skipped, its balance layers are not all quantized" for m in mappings if m not in kept
            ]
            mappings = kept
        if i == 0:
            self.result.notes += [f"{'.'.join(step.source)}: {n} (and likewise in every layer)" for n in notes]
        if not mappings:
            return
        first = {id(m): m.balance[0] for m in mappings}
        stats: dict[int, torch.Tensor] = {}
        tokens: dict[int, int] = {}
        cached: dict[int, list] = {id(m): [] for m in mappings}
        cached_tokens = {id(m): 0 for m in mappings}

        def stat_hook(key):
            def hook(module, args):
                x = args[0].reshape(-1, args[0].shape[-1]).abs().float()
                v = x.amax(dim=0) if step.algorithm == "smoothquant" else x.sum(dim=0)
                prev = stats.get(key)
                stats[key] = (
                    v if prev is None else (torch.maximum(prev, v) if step.algorithm == "smoothquant" else prev + v)
                )
                tokens[key] = tokens.get(key, 0) + x.shape[0]

            return hook

        def parent_hook(key):
            def hook(module, args, kwargs):
                if cached_tokens[key] < AWQ_MAX_TOKENS:
                    x = args[0] if args else kwargs["hidden_states"]
                    cached[key].append((args, dict(kwargs)))
                    cached_tokens[key] += x.numel() // x.shape[-1]

            return hook

        handles = [first[k].register_forward_pre_hook(stat_hook(k)) for k in first]
        if step.algorithm == "awq":
            handles += [m.parent.register_forward_pre_hook(parent_hook(id(m)), with_kwargs=True) for m in mappings]
        try:
            self.calibrate(i, layer)
        finally:
            for h in handles:
                h.remove()
        for m in mappings:
            key = id(m)
            if step.algorithm == "smoothquant":
                s = smoothquant_scales(stats[key], m.balance, step.smoothing_strength)
            else:
                weight_args = [self.plan.quant[n][1].weights for n in m.balance_names]
                s, _ = awq_search(
                    m,
                    stats[key] / tokens[key],
                    cached[key],
                    weight_args,
                    n_grid=step.n_grid,
                    duo_scaling=step.duo_scaling,
                )
                cached[key].clear()
            apply_scales(m, s)


# Linears the engine (and vLLM) runs as one matmul: NVFP4 gives them one global scale
_FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _fused_global_scales(
    modules: dict[str, torch.nn.Linear], weights: dict[str, QuantizationArgs]
) -> dict[str, torch.Tensor]:
    """NVFP4 global scales: each Linear's own, the smallest of its fused group's where it has one
    (so no group scale of any member overflows FP8), as llm-compressor does."""
    own = {n: fp4_global_scale(m.weight) for n, m in modules.items() if weights[n].strategy == "tensor_group"}
    shared = dict(own)
    for name in own:
        parent, _, leaf = name.rpartition(".")
        group = next((g for g in _FUSED if leaf in g), ())
        members = [f"{parent}.{other}" for other in group if f"{parent}.{other}" in own]
        if members:
            shared[name] = torch.stack([own[n] for n in members]).amin(dim=0)
    return shared


@contextmanager
def _observing_kv(config, ranges: dict, on: bool) -> Iterator[None]:
    """While on, records in `ranges` each attention module's largest |K| (after the rotary
    embedding: what the cache stores) and |V|, through an attention function of transformers'
    registry that wraps the model's own."""
    if not on:
        yield
        return
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = config._attn_implementation

    def observe(module, query, key, value, *args, **kwargs):
        k, v = key.detach().abs().amax().float(), value.detach().abs().amax().float()
        if module in ranges:
            k, v = torch.maximum(ranges[module][0], k), torch.maximum(ranges[module][1], v)
        ranges[module] = (k, v)
        inner = (
            sys.modules[type(module).__module__].eager_attention_forward if impl == "eager"
            else ALL_ATTENTION_FUNCTIONS[impl]
        )  # fmt: skip
        return inner(module, query, key, value, *args, **kwargs)

    AttentionInterface.register(_KV_OBSERVER, observe)
    config._attn_implementation = _KV_OBSERVER
    try:
        yield
    finally:
        config._attn_implementation = impl


_KV_OBSERVER = "hub_kv_observer"


def _static(scheme: QuantizationScheme) -> bool:
    """Whether the scheme quantizes input activations with a calibrated (static) scale."""
    return scheme.input_activations is not None and not scheme.input_activations.dynamic


def _rows(t: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    return None if t is None else t[rows]
