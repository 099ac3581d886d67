"""The arguments each recipe modifier accepts, with a type and a range for every one. The hub
checks a recipe with `check_arguments` when a user submits it, and the compression library with
the same function when a worker parses it: a value out of range (an `n_grid` of 10^12 that would
build a list that long, a NaN, an infinity) is refused by name before anything is allocated.

A value of the right type that the library does not implement (`actorder: group`, an int8 KV
cache) raises NotImplementedError; everything else wrong raises ValueError.

Plain Python, no torch and no Django: the hub's web process and the libraries both import it."""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_NAME = 200  # a module name, a regular expression, a scheme or dtype name
MAX_NAMES = 1024  # entries in a `targets` / `ignore` list, or mappings
MAX_GROUPS = 64  # config_groups, scheme mappings
MAX_DIMENSION = 1 << 16  # group and block sizes


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Spec:
    """One argument's type and range: `check` raises with a message that names the argument."""

    allowed: str

    def check(self, value: Any, name: str) -> None:
        if not self.accepts(value):
            raise ValueError(f"{name} must be {self.allowed}, got {_shown(value)}")

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Spec):
    low: int
    high: int

    @property
    def allowed(self) -> str:
        return f"an integer from {self.low} to {self.high}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True)
class Real(Spec):
    low: float
    high: float

    @property
    def allowed(self) -> str:
        return f"a finite number from {self.low:g} to {self.high:g}"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and self.low <= value <= self.high
        )


@dataclass(frozen=True)
class Flag(Spec):
    allowed = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equal, and a bool only equals a bool (True == 1 in Python, not here)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class OneOf(Spec):
    def __init__(self, *values: Any) -> None:
        self.values = values
        self.allowed = "one of " + ", ".join(_shown(v) for v in values)

    def accepts(self, value: Any) -> bool:
        return any(_same(value, v) for v in self.values)


class Matches(Spec):
    def __init__(self, pattern: str, allowed: str) -> None:
        self.pattern, self.allowed = re.compile(pattern), allowed

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None


class Unsupported(Spec):
    """An argument llm-compressor writes that changes nothing here only at these values: any
    other value of the right type is valid but not implemented."""

    def __init__(self, spec: Spec, *implemented: Any) -> None:
        self.spec, self.implemented, self.allowed = spec, implemented, spec.allowed

    def check(self, value: Any, name: str) -> None:
        if any(_same(value, v) for v in self.implemented):
            return
        self.spec.check(value, name)
        raise NotImplementedError(
            f"{name}={_shown(value)} is not supported (accepted: {', '.join(_shown(v) for v in self.implemented)})"
        )


@dataclass(frozen=True)
class Text(Spec):
    max_length: int = MAX_NAME

    @property
    def allowed(self) -> str:
        return f"a string of at most {self.max_length} characters"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and len(value) <= self.max_length


@dataclass(frozen=True)
class Names(Spec):
    """A name, or a list of names (`targets`, `ignore`)."""

    max_items: int = MAX_NAMES

    @property
    def allowed(self) -> str:
        return f"a name or a list of at most {self.max_items} names of at most {MAX_NAME} characters"

    def accepts(self, value: Any) -> bool:
        items = [value] if isinstance(value, str) else value
        return isinstance(items, list) and len(items) <= self.max_items and all(Text().accepts(v) for v in items)


@dataclass(frozen=True)
class Optional(Spec):
    spec: Spec

    @property
    def allowed(self) -> str:
        return f"null or {self.spec.allowed}"

    def check(self, value: Any, name: str) -> None:
        if value is not None:
            self.spec.check(value, name)


@dataclass(frozen=True)
class Either(Spec):
    first: Spec
    second: Spec

    @property
    def allowed(self) -> str:
        return f"{self.first.allowed}, or {self.second.allowed}"

    def check(self, value: Any, name: str) -> None:
        try:
            self.first.check(value, name)
        except ValueError:
            try:
                self.second.check(value, name)
            except ValueError:
                raise ValueError(f"{name} must be {self.allowed}, got {_shown(value)}") from None


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec
    max_items: int = MAX_NAMES
    length: int | None = None  # an exact length: a pair, say

    @property
    def allowed(self) -> str:
        return f"a list of {self.length or f'at most {self.max_items}'} items"

    def check(self, value: Any, name: str) -> None:
        if not (isinstance(value, list) and len(value) <= self.max_items and len(value) == (self.length or len(value))):
            raise ValueError(f"{name} must be {self.allowed}, got {_shown(value)}")
        for i, item in enumerate(value):
            self.item.check(item, f"{name}[{i}]")


@dataclass(frozen=True)
class Fields(Spec):
    """A mapping of known keys, each with its own spec; unknown keys are refused by name."""

    fields: Mapping[str, Spec]
    required: tuple[str, ...] = ()

    @property
    def allowed(self) -> str:
        return "a mapping of " + ", ".join(self.fields)

    def check(self, value: Any, name: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be {self.allowed}, got {_shown(value)}")
        unknown = sorted(str(k) for k in value if k not in self.fields)
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(self.fields)}")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise ValueError(f"{name}: missing {', '.join(missing)}")
        for key, item in value.items():
            self.fields[key].check(item, f"{name}.{key}")


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping of names to values of one spec."""

    item: Spec
    max_items: int = MAX_GROUPS

    @property
    def allowed(self) -> str:
        return f"a mapping of at most {self.max_items} names"

    def check(self, value: Any, name: str) -> None:
        if not (isinstance(value, dict) and len(value) <= self.max_items and all(Text().accepts(k) for k in value)):
            raise ValueError(f"{name} must be {self.allowed}, got {_shown(value)}")
        for key, item in value.items():
            self.item.check(item, f"{name}.{key}")


FRACTION = Real(0, 1)
SIZE = Int(1, MAX_DIMENSION)
STEP = Optional(Real(-1, 1e6))  # a schedule's start / end / update, in epochs
MASK = Matches(r"\d{1,3}:\d{1,3}", "N:M, N pruned in every M (at most 999)")
# compressed-tensors' QuantizationArgs
QUANT_ARGS = Fields(
    {
        "num_bits": Int(1, 32),
        "type": OneOf("int", "float"),
        "symmetric": Flag(),
        "group_size": Optional(SIZE),
        "strategy": Optional(OneOf("tensor", "channel", "group", "block", "token", "tensor_group", "attn_head")),
        "block_structure": Optional(ListOf(SIZE, length=2)),
        "dynamic": OneOf(True, False, "local"),
        "actorder": Optional(OneOf(True, False, "group", "weight", "static", "dynamic")),
        "scale_dtype": Optional(Text(32)),
        "zp_dtype": Optional(Text(32)),
        "observer": Optional(Text(64)),
        # the mse observer tries maxshrink * grid shrinks of each range
        "observer_kwargs": Fields({"grid": Real(1, 1000), "maxshrink": FRACTION, "norm": Real(0.1, 10)}),
    }
)
# compressed-tensors' QuantizationScheme
SCHEME = Fields(
    {
        "targets": Names(),
        "weights": Optional(QUANT_ARGS),
        "input_activations": Optional(QUANT_ARGS),
        "output_activations": Optional(QUANT_ARGS),
        "format": Optional(Text(64)),
    },
    required=("targets",),
)

OBSERVERS = (None, "minmax", "memoryless_minmax", "static_minmax")
WEIGHT_OBSERVERS = OBSERVERS + ("mse", "memoryless_mse")

# Arguments llm-compressor writes into serialized recipes: accepted where they change nothing here.
_BOOKKEEPING: dict[str, Spec] = {
    "requires_calibration_data": Flag(),
    "index": Optional(Int(-1, 1 << 20)),
    "group": Optional(Text()),
    "start": Unsupported(STEP, None, -1, 0),
    "end": Unsupported(STEP, None, -1, 0),
    "update": Unsupported(STEP, None),
}
_QUANTIZATION: dict[str, Spec] = {
    "targets": Names(),
    "ignore": Names(),
    "scheme": Either(Text(64), MapOf(Names())),
    "config_groups": MapOf(SCHEME),
    "weight_observer": Unsupported(Text(64), *WEIGHT_OBSERVERS),
    "kv_cache_scheme": Optional(QUANT_ARGS),
    "bypass_divisibility_checks": Unsupported(Flag(), False),
    "input_observer": Unsupported(Text(64), *OBSERVERS),
    "output_observer": Unsupported(Text(64), *OBSERVERS),
    "observer": Unsupported(MapOf(Text(64)), None),
}
_GPTQ: dict[str, Spec] = {
    "block_size": SIZE,
    "dampening_frac": Optional(FRACTION),
    "actorder": Optional(OneOf(True, False, "static", "weight", "group", "dynamic")),
    "offload_hessians": Flag(),
    "batched_quantization": OneOf(True, False, "auto"),
}

MODIFIERS: dict[str, dict[str, Spec]] = {
    "QuantizationModifier": _QUANTIZATION,
    "GPTQModifier": {**_QUANTIZATION, **_GPTQ},
    # targets / ignore / scheme / config_groups: llm-compressor's older AWQModifier, which also quantized
    "AWQModifier": {
        **_QUANTIZATION,
        "mappings": Optional(
            ListOf(
                Fields({"smooth_layer": Text(), "balance_layers": Names()}, required=("smooth_layer", "balance_layers"))
            )
        ),
        "duo_scaling": OneOf(True, False, "both"),
        # one trial rescaling of every mapping per grid point
        "n_grid": Int(1, 100),
        "offload_device": Optional(Text(32)),
    },
    "SmoothQuantModifier": {
        "smoothing_strength": FRACTION,
        "mappings": Optional(ListOf(ListOf(Names(), length=2))),
        "ignore": Optional(Names()),
        "num_calibration_steps": Unsupported(Int(1, 1 << 20), None),
        "calibration_function": Unsupported(Text(), None),
        "algorithm": Unsupported(Text(32), "smoothquant"),
    },
    "SparseGPTModifier": {
        "sparsity": Optional(Either(FRACTION, ListOf(FRACTION))),
        "mask_structure": MASK,
        "targets": Names(),
        "ignore": Names(),
        "block_size": SIZE,
        "dampening_frac": Optional(FRACTION),
        "sparsity_profile": Unsupported(Text(32), None),
        "owl_m": Unsupported(Int(1, 1 << 20), None),
        "owl_lmbda": Unsupported(Real(0, 1e6), None),
        "sequential_update": Unsupported(Flag(), None, False),
        "preserve_sparsity_mask": Unsupported(Flag(), False),
        "offload_hessians": Flag(),
    },
    "MagnitudePruningModifier": {
        "targets": Names(),
        "init_sparsity": FRACTION,
        "final_sparsity": FRACTION,
        "mask_structure": Either(OneOf("unstructured"), MASK),
        # one shot (init == final sparsity): the schedule arguments have nothing to act on
        "update_scheduler": Text(32),
        "scheduler_args": MapOf(Either(Real(-1e6, 1e6), Text(64))),
        "leave_enabled": Flag(),
        "apply_globally": Unsupported(Flag(), False),
        "start": STEP,
        "end": STEP,
        "update": STEP,
    },
}


def check_arguments(modifier: str, args: dict[str, Any], where: str) -> None:
    """Refuse an argument `modifier` does not know, or a value out of its type and range, with a
    message that starts at `where` (the modifier's place in the recipe) and names the argument."""
    specs = {**_BOOKKEEPING, **MODIFIERS[modifier]}
    unknown = sorted(str(k) for k in args if k not in specs)
    if unknown:
        raise ValueError(f"{where}: unknown argument(s) {', '.join(unknown)}; supported: {', '.join(sorted(specs))}")
    for key, value in args.items():
        specs[key].check(value, f"{where}: {key}")
