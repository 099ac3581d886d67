"""Recipes: named presets, and recipe files in llm-compressor's YAML shape, parsed into steps.

The shape is llm-compressor's (`Recipe.from_dict`): top-level `<name>_stage:` mappings, each
holding `<name>_modifiers:` mappings of `ModifierName: {arguments}`, applied in order. A recipe
serialized by llm-compressor (the `recipe.yaml` of a published model) also carries bookkeeping
arguments such as `requires_calibration_data` or `offload_hessians`; those are accepted where
they change nothing here. Unknown modifiers and arguments, values out of their declared type and
range (`common.recipe_args`, which the hub checks submitted recipes with too), and values we do not
implement, are errors that name them.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    preset_name_to_scheme,
)
from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

from common.recipe_args import WEIGHT_OBSERVERS, check_arguments
from compress.quant import MSE_OBSERVERS, check_supported, is_fp4
from compress.sparse import parse_mask_structure


def _yaml(text: str) -> str:
    return text.strip() + "\n"


# Preset names say the scheme, then the algorithm where there is a choice. `ignore: [lm_head]` everywhere: embeddings and the LM head stay
# dense. The int4 presets choose group scales with the "mse" observer (a shrink of each group's
# range that minimises the weight error; llm-compressor's default is plain min/max): on
# SmolLM2-135M it takes GPTQ W4A16 from 33.2 to 29.9 WikiText-2 perplexity (bench/RESULTS.md). The group-128 schemes fall back to a smaller group (64, then 32) on models whose
# Linear input widths are not multiples of 128 (SmolLM2: 576); the report says so.
PRESETS: dict[str, str] = {
    # int4 weights, symmetric, group 128, round-to-nearest (no calibration data)
    "w4a16": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16, weight_observer: mse}
"""),
    # int4 weights, symmetric, group 128, GPTQ with static activation order
    "w4a16-gptq": _yaml("""
default_stage:
  default_modifiers:
    GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16, weight_observer: mse, block_size: 128, dampening_frac: 0.01, actorder: static}
"""),
    # AWQ rescaling, then int4 symmetric group 128 round-to-nearest. Symmetric, unlike
    # llm-compressor's W4A16_ASYM example: transformers cannot load asymmetric pack-quantized
    # checkpoints with compressed-tensors 0.20 (see w4a16-asym)
    "w4a16-awq": _yaml("""
default_stage:
  default_modifiers:
    AWQModifier: {duo_scaling: true, n_grid: 20}
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16, weight_observer: mse}
"""),
    # int4 weights, asymmetric (packed zero points), group 128, GPTQ. vLLM loads it; transformers
    # with compressed-tensors 0.20 does not (its meta-device setup expects unpacked zero points)
    "w4a16-asym": _yaml("""
default_stage:
  default_modifiers:
    GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16_ASYM, weight_observer: mse, block_size: 128, dampening_frac: 0.01, actorder: static}
"""),
    # int8 weights, symmetric, group 128 (compressed-tensors' W8A16), round-to-nearest
    "w8a16": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: W8A16}
"""),
    # SmoothQuant (strength 0.8, llm-compressor's W8A8 example) then GPTQ: int8 per-channel
    # weights, dynamic per-token int8 activations
    "w8a8-int8": _yaml("""
default_stage:
  default_modifiers:
    SmoothQuantModifier: {smoothing_strength: 0.8}
    GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: W8A8, block_size: 128, dampening_frac: 0.01, actorder: static}
"""),
    # FP8 E4M3 per-channel weights, dynamic per-token FP8 activations (no calibration data)
    "fp8-dynamic": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: FP8_DYNAMIC}
"""),
    # fp8-dynamic, and the KV cache in FP8 with a scale per layer for K and for V, calibrated on
    # the data (the largest K and V over 448): twice the tokens in the same cache memory
    "fp8-kv": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: FP8_DYNAMIC
      kv_cache_scheme: {num_bits: 8, type: float, strategy: tensor, dynamic: false, symmetric: true}
"""),
    # FP8 E4M3 weights with one scale per tensor, FP8 activations with one static scale per
    # tensor calibrated on the data (compressed-tensors' FP8 scheme; the scale is the largest
    # input seen over 448)
    "fp8-static": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: FP8}
"""),
    # FP8 E4M3 weights with a scale per 128x128 block, FP8 activations with a scale per token and
    # group of 128 inputs (DeepSeek-V3's layout; no calibration data)
    "fp8-block": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: FP8_BLOCK}
"""),
    # FP8 E4M3 per-channel weights placed by GPTQ (calibrated), dynamic per-token FP8 activations:
    # the same checkpoint format as fp8-dynamic, with GPTQ's error feedback where a small model
    # loses too much to round-to-nearest (SmolLM2-135M: +1.2% WikiText-2 perplexity vs +3.4%)
    "fp8-gptq": _yaml("""
default_stage:
  default_modifiers:
    GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: FP8_DYNAMIC, block_size: 128, dampening_frac: 0.01, actorder: static}
"""),
    # FP4 E2M1 weights in groups of 16 with FP8 scales over a per-tensor global scale (shared by
    # the Linears the engine fuses), 16-bit activations; round-to-nearest, no calibration data
    "nvfp4a16": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: NVFP4A16}
"""),
    # FP4 E2M1 weights in groups of 32 with power-of-two (E8M0) scales, 16-bit activations
    "mxfp4a16": _yaml("""
default_stage:
  default_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: MXFP4A16}
"""),
    # 2:4 semi-structured sparsity by SparseGPT, saved dense
    "2of4": _yaml("""
sparsity_stage:
  sparsity_modifiers:
    SparseGPTModifier: {sparsity: 0.5, mask_structure: "2:4", targets: [Linear], ignore: [lm_head], block_size: 128, dampening_frac: 0.01}
"""),
    # 2:4 by weight magnitude (the simple baseline, no calibration data)
    "2of4-magnitude": _yaml("""
sparsity_stage:
  sparsity_modifiers:
    MagnitudePruningModifier: {targets: ["re:.*_proj$"], init_sparsity: 0.5, final_sparsity: 0.5, mask_structure: "2:4"}
"""),
    # 2:4 SparseGPT, then FP8-dynamic
    "2of4-fp8": _yaml("""
sparsity_stage:
  sparsity_modifiers:
    SparseGPTModifier: {sparsity: 0.5, mask_structure: "2:4", targets: [Linear], ignore: [lm_head], block_size: 128, dampening_frac: 0.01}
quantization_stage:
  quantization_modifiers:
    QuantizationModifier: {targets: [Linear], ignore: [lm_head], scheme: FP8_DYNAMIC}
"""),
    # 2:4 SparseGPT, then GPTQ W4A16 keeping the pruned weights at zero
    "2of4-w4a16": _yaml("""
sparsity_stage:
  sparsity_modifiers:
    SparseGPTModifier: {sparsity: 0.5, mask_structure: "2:4", targets: [Linear], ignore: [lm_head], block_size: 128, dampening_frac: 0.01}
quantization_stage:
  quantization_modifiers:
    GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16, weight_observer: mse, block_size: 128, dampening_frac: 0.01, actorder: static}
"""),
}

DEFAULT_IGNORE = ["lm_head"]


@dataclass
class QuantizeStep:
    """QuantizationModifier (round-to-nearest) or GPTQModifier."""

    algorithm: str  # "rtn" | "gptq"
    schemes: list[QuantizationScheme]
    ignore: list[str]
    source: tuple[str, str, str]  # (stage, group, modifier) in the recipe document
    block_size: int = 128
    dampening_frac: float = 0.01
    actorder: bool = False
    adjusted: bool = False  # schemes changed for the model (group-size fallback)
    kv_cache: QuantizationArgs | None = None  # K and V quantized in the cache with calibrated scales

    @property
    def needs_data(self) -> bool:
        # static activation scales are calibrated
        static = any(s.input_activations is not None and not s.input_activations.dynamic for s in self.schemes)
        return self.algorithm == "gptq" or static or self.kv_cache is not None


@dataclass
class SmoothStep:
    """SmoothQuantModifier or AWQModifier: rescaling only; a later quantization step quantizes."""

    algorithm: str  # "smoothquant" | "awq"
    mappings: list[tuple[str, list[str]]] | None  # None: `compress.smooth.default_mappings`
    ignore: list[str]
    source: tuple[str, str, str]
    smoothing_strength: float = 0.5
    n_grid: int = 20
    duo_scaling: bool | str = True

    needs_data = True


@dataclass
class PruneStep:
    """SparseGPTModifier or MagnitudePruningModifier (one shot)."""

    algorithm: str  # "sparsegpt" | "magnitude"
    sparsity: float
    n: int  # pruned in every m (m == 0: unstructured)
    m: int
    targets: list[str]
    ignore: list[str]
    source: tuple[str, str, str]
    block_size: int = 128
    dampening_frac: float = 0.01

    needs_data = property(lambda self: self.algorithm == "sparsegpt")

    @property
    def structure(self) -> str:
        return f"{self.n}:{self.m}" if self.m else f"unstructured {self.sparsity:g}"


Step = QuantizeStep | SmoothStep | PruneStep


@dataclass
class Recipe:
    steps: list[Step]
    document: dict[str, Any]  # the llm-compressor-shaped recipe, as written to recipe.yaml
    name: str | None = None  # preset name
    notes: list[str] = field(default_factory=list)

    @property
    def needs_data(self) -> bool:
        return any(s.needs_data for s in self.steps)

    def to_yaml(self) -> str:
        """The recipe document; quantization steps whose schemes were adjusted for the model
        (group-size fallback) are written with explicit `config_groups`, so the file
        reproduces this run."""
        doc = copy.deepcopy(self.document)
        for step in self.steps:
            if isinstance(step, QuantizeStep) and step.adjusted:
                args = doc[step.source[0]][step.source[1]][step.source[2]]
                for key in ("scheme", "targets", "config_groups"):
                    args.pop(key, None)
                args["config_groups"] = {
                    f"group_{i}": s.model_dump(mode="json", exclude_none=True, exclude={"format"})
                    for i, s in enumerate(step.schemes)
                }
        return yaml.safe_dump(doc, sort_keys=False)


def load_recipe(recipe: "Recipe | str | Path | dict") -> Recipe:
    """A preset name, a path to a YAML/JSON recipe file, YAML text, or an already parsed dict."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(recipe)
    text = str(recipe)
    if text in PRESETS:
        return parse_recipe(yaml.safe_load(PRESETS[text]), name=text)
    if "\n" not in text and len(text) < 4096 and Path(text).is_file():
        text = Path(text).read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"recipe is not YAML: {e}") from None
    except RecursionError:
        raise ValueError("recipe is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError(
            f"recipe {str(recipe)[:80]!r} is neither a preset ({', '.join(PRESETS)}), nor a recipe file, "
            f"nor YAML recipe text"
        )
    return parse_recipe(doc)


def parse_recipe(doc: dict[str, Any], name: str | None = None) -> Recipe:
    steps: list[Step] = []
    for stage_key, stage in doc.items():
        if not (isinstance(stage_key, str) and stage_key.endswith("_stage") and isinstance(stage, dict)):
            raise ValueError(
                f"recipe: top-level key {stage_key!r} is not a stage; expected `<name>_stage:` holding "
                f"`<name>_modifiers:` groups of `ModifierName: {{arguments}}`"
            )
        for group_key, group in stage.items():
            if group_key == "run_type":
                if group != "oneshot":
                    raise NotImplementedError(f"recipe: {stage_key}.run_type {group!r} is not supported (oneshot only)")
                continue
            if not (isinstance(group_key, str) and group_key.endswith("_modifiers") and isinstance(group, dict)):
                raise ValueError(f"recipe: {stage_key}.{group_key} is not a `<name>_modifiers:` mapping")
            for mod_name, args in group.items():
                if mod_name not in _PARSERS:
                    raise ValueError(
                        f"recipe: unknown modifier {mod_name!r} in {stage_key}.{group_key}; "
                        f"supported: {', '.join(_PARSERS)}"
                    )
                args = args or {}
                if not isinstance(args, dict):
                    raise ValueError(f"recipe: arguments of {mod_name} must be a mapping")
                source = (stage_key, group_key, mod_name)
                check_arguments(mod_name, args, _where(source))
                steps.extend(_PARSERS[mod_name](args, source))
    if not steps:
        raise ValueError("recipe has no modifiers")
    _check_order(steps)
    return Recipe(steps=steps, document=doc, name=name)


def _where(source: tuple[str, str, str]) -> str:
    return ".".join(source)


def _as_list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def _resolve_schemes(args: dict[str, Any], where: str) -> list[QuantizationScheme]:
    targets = _as_list(args.get("targets", ["Linear"]))
    scheme, groups = args.get("scheme"), args.get("config_groups")
    if scheme is not None and groups is not None:
        raise ValueError(f"{where}: give either `scheme` or `config_groups`, not both")
    try:
        if groups is not None:
            schemes = list(QuantizationConfig(config_groups=groups).config_groups.values())
        elif isinstance(scheme, str):
            schemes = [preset_name_to_scheme(scheme.upper(), targets)]
        elif isinstance(scheme, dict):
            schemes = [preset_name_to_scheme(k.upper(), _as_list(v)) for k, v in scheme.items()]
        else:
            raise ValueError(f"{where}: needs `scheme` (a preset name such as W4A16) or `config_groups`")
    except KeyError as e:
        raise ValueError(f"{where}: unknown scheme {e}; presets: {', '.join(PRESET_SCHEMES)}") from None
    except Exception as e:
        if isinstance(e, ValueError) and str(e).startswith(where):
            raise
        raise ValueError(f"{where}: invalid quantization scheme: {e}") from None
    observer = args.get("weight_observer")
    for s in schemes:
        if observer is not None:
            s.weights.observer = observer
        if s.weights.observer not in WEIGHT_OBSERVERS:
            raise NotImplementedError(
                f"{where}: weight observer {s.weights.observer!r} is not supported (accepted: {list(WEIGHT_OBSERVERS)})"
            )
        check_supported(s, where)
        if is_fp4(s.weights) and s.weights.observer in MSE_OBSERVERS:
            raise NotImplementedError(
                f"{where}: FP4 weights take min/max scales; the {s.weights.observer!r} observer is not supported"
            )
        if s.weights.actorder == "group":
            raise NotImplementedError(
                f"{where}: actorder 'group' writes weight_g_idx, which vLLM rejects; use 'static'"
            )
    return schemes


def _parse_quantization(args: dict, source: tuple, algorithm: str = "rtn") -> list[Step]:
    where = _where(source)
    schemes = _resolve_schemes(args, where)
    step = QuantizeStep(algorithm, schemes, _as_list(args.get("ignore", DEFAULT_IGNORE)), source)
    if args.get("kv_cache_scheme") is not None:
        step.kv_cache = _kv_cache_args(args["kv_cache_scheme"], where)
    if algorithm == "gptq" and any(is_fp4(s.weights) for s in schemes):
        raise NotImplementedError(f"{where}: GPTQ with FP4 weights is not supported yet; use QuantizationModifier")
    if algorithm == "gptq":
        step.block_size = int(args.get("block_size", 128))
        damp = args.get("dampening_frac", 0.01)
        step.dampening_frac = 0.01 if damp is None else float(damp)
        actorder = args.get("actorder", "static")
        if actorder in (None, False):
            step.actorder = any(s.weights.actorder in ("static", "weight") for s in schemes)
        elif str(actorder).lower() in ("static", "weight"):
            step.actorder = True
        elif str(actorder).lower() in ("group", "dynamic", "true"):
            raise NotImplementedError(
                f"{where}: actorder {actorder!r} writes weight_g_idx, which vLLM rejects; use 'static'"
            )
        else:
            raise ValueError(f"{where}: actorder must be 'static' (or 'weight') or null, got {actorder!r}")
        if step.actorder:
            # as llm-compressor does: the scheme in config.json records the ordering used
            for s in schemes:
                s.weights.actorder = "static"
        if step.block_size <= 0:
            raise ValueError(f"{where}: block_size must be positive")
    return [step]


def _kv_cache_args(raw: dict, where: str) -> QuantizationArgs:
    """The KV-cache scheme vLLM and our engine read: FP8 E4M3, one static scale per tensor for K
    and one for V in each layer, calibrated here."""
    try:
        args = QuantizationArgs.model_validate(raw)
    except Exception as e:
        raise ValueError(f"{where}: invalid kv_cache_scheme: {e}") from None
    if not (args.type == "float" and args.num_bits == 8 and args.strategy == "tensor" and args.symmetric
            and not args.dynamic):  # fmt: skip
        raise NotImplementedError(
            f"{where}: kv_cache_scheme must be static symmetric per-tensor FP8 (num_bits 8, type float, strategy "
            f"tensor, dynamic false), what vLLM and the engine read; got {raw}"
        )
    return args


def _mappings(raw: Any, where: str, awq: bool) -> list[tuple[str, list[str]]] | None:
    """AWQ mappings are [{smooth_layer, balance_layers}], SmoothQuant's [[balance...], smooth];
    None when the recipe names none (the model family's defaults then apply)."""
    if raw is None:
        return None
    out = []
    for m in raw:
        if awq and isinstance(m, dict) and set(m) <= {"smooth_layer", "balance_layers"} and len(m) == 2:
            out.append((m["smooth_layer"], _as_list(m["balance_layers"])))
        elif not awq and isinstance(m, (list, tuple)) and len(m) == 2 and isinstance(m[1], str):
            out.append((m[1], _as_list(m[0])))
        else:
            shape = "{smooth_layer: ..., balance_layers: [...]}" if awq else "[[balance layers...], smooth layer]"
            raise ValueError(f"{where}: each mapping must be {shape}, got {m!r}")
    return out


def _parse_awq(args: dict, source: tuple) -> list[Step]:
    where = _where(source)
    duo = args.get("duo_scaling", True)
    if duo not in (True, False, "both"):
        raise ValueError(f"{where}: duo_scaling must be true, false or 'both'")
    steps: list[Step] = [
        SmoothStep(
            "awq",
            _mappings(args.get("mappings"), where, True),
            [],
            source,
            n_grid=int(args.get("n_grid", 20)),
            duo_scaling=duo,
        )
    ]
    if steps[0].n_grid < 1:
        raise ValueError(f"{where}: n_grid must be at least 1")
    if args.keys() & {"scheme", "config_groups"}:
        steps += _parse_quantization(args, source)
    return steps


def _parse_smoothquant(args: dict, source: tuple) -> list[Step]:
    where = _where(source)
    strength = float(args.get("smoothing_strength", 0.5))
    if not 0 <= strength <= 1:
        raise ValueError(f"{where}: smoothing_strength must be within [0, 1]")
    return [
        SmoothStep(
            "smoothquant",
            _mappings(args.get("mappings"), where, False),
            _as_list(args.get("ignore") or []),
            source,
            smoothing_strength=strength,
        )
    ]


def _sparsity(value: Any, n: int, m: int, where: str) -> float:
    if isinstance(value, (list, tuple)):
        raise NotImplementedError(f"{where}: per-layer sparsity lists are not supported")
    if m:
        if value is not None and abs(float(value) - n / m) > 1e-9:
            raise ValueError(f"{where}: sparsity {value} contradicts mask_structure {n}:{m} (= {n / m:g})")
        return n / m
    if value is None or not 0 < float(value) < 1:
        raise ValueError(f"{where}: unstructured pruning needs 0 < sparsity < 1")
    return float(value)


def _parse_sparsegpt(args: dict, source: tuple) -> list[Step]:
    where = _where(source)
    n, m = parse_mask_structure(args.get("mask_structure", "0:0"))
    damp = args.get("dampening_frac", 0.01)
    step = PruneStep(
        "sparsegpt",
        _sparsity(args.get("sparsity"), n, m, where),
        n,
        m,
        _as_list(args.get("targets", ["Linear"])),
        _as_list(args.get("ignore", DEFAULT_IGNORE)),
        source,
        block_size=int(args.get("block_size", 128)),
        dampening_frac=0.01 if damp is None else float(damp),
    )
    if m and step.block_size % m:
        raise ValueError(f"{where}: block_size {step.block_size} must be a multiple of {m}")
    return [step]


def _parse_magnitude(args: dict, source: tuple) -> list[Step]:
    where = _where(source)
    if "targets" not in args:
        raise ValueError(f"{where}: `targets` is required")
    init, final = args.get("init_sparsity"), args.get("final_sparsity")
    if init is None or final is None or init != final:
        raise NotImplementedError(f"{where}: only one-shot pruning is supported (init_sparsity == final_sparsity)")
    structure = args.get("mask_structure", "unstructured")
    n, m = (0, 0) if structure == "unstructured" else parse_mask_structure(structure)
    return [PruneStep("magnitude", _sparsity(final, n, m, where), n, m, _as_list(args["targets"]), [], source)]


_PARSERS = {
    "QuantizationModifier": _parse_quantization,
    "GPTQModifier": lambda a, s: _parse_quantization(a, s, "gptq"),
    "AWQModifier": _parse_awq,
    "SmoothQuantModifier": _parse_smoothquant,
    "SparseGPTModifier": _parse_sparsegpt,
    "MagnitudePruningModifier": _parse_magnitude,
}


def _check_order(steps: list[Step]) -> None:
    seen_quant = False
    for step in steps:
        if isinstance(step, QuantizeStep):
            seen_quant = True
        elif seen_quant:
            kind = "pruning" if isinstance(step, PruneStep) else "smoothing"
            raise NotImplementedError(
                f"{_where(step.source)}: {kind} after quantization is not supported; put it first"
            )
    for i, step in enumerate(steps):
        if (
            isinstance(step, SmoothStep)
            and step.algorithm == "awq"
            and not any(isinstance(s, QuantizeStep) for s in steps[i + 1 :])
        ):
            raise ValueError(
                f"{_where(step.source)}: AWQModifier only rescales; follow it with a QuantizationModifier or GPTQModifier"
            )
