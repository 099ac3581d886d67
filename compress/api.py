"""`compress()`: plan on the model's skeleton, calibrate and compress layer by layer, each layer
read from the checkpoint just before and written out just after, save atomically, report."""

import copy
import hashlib
import json
import os
import platform
import resource
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from common.work import CancelCheck, Cancelled, Progress
from compress.calibration import CalibrationConfig, load_calibration
from compress.lazy import LazyCheckpoint
from compress.pipeline import Runner, plan_model
from compress.recipe import PruneStep, QuantizeStep, Recipe, SmoothStep, load_recipe
from compress.save import SHARD_BYTES, ShardWriter, copy_tokenizer_files, write_config, write_layer

REPORT_NAME = "compression_report.json"
RECIPE_NAME = "recipe.yaml"
_ALGORITHM_NAMES = {
    "rtn": "RTN",
    "gptq": "GPTQ",
    "awq": "AWQ",
    "smoothquant": "SmoothQuant",
    "sparsegpt": "SparseGPT",
    "magnitude": "magnitude pruning",
}


@dataclass
class CompressionReport:
    """What a run did; written as compression_report.json next to the weights. A pruned model
    is saved dense (zeros in place, no `sparsity_config`: vLLM refuses one); `sparsity` here is
    where the 2:4 fact is recorded."""

    model: str
    recipe: str  # preset name, or "custom"
    scheme: str  # short summary, e.g. "W4A16", "2:4 + FP8_DYNAMIC"
    schemes: list[dict]  # compressed-tensors schemes as written in config.json
    algorithms: list[str]
    sparsity: dict | None
    calibration: dict | None
    device: str
    compute_dtype: str  # what the forward passes ran in (common.dtypes)
    seconds: dict[str, float]
    peak_memory: dict[str, int]  # process and CUDA high-water marks; decoder layers in memory at once
    layers: list[dict]
    notes: list[str]
    versions: dict[str, str]
    files: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def compress(
    model_dir: Path | str,
    recipe: Recipe | str | Path,
    out_dir: Path | str,
    *,
    calibration: CalibrationConfig | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    shard_bytes: int = SHARD_BYTES,
) -> CompressionReport:
    """Compress the Hugging Face checkpoint in `model_dir` with `recipe` (a preset name, a recipe
    file or YAML text) into `out_dir`, which must not exist yet (or be empty). The result is
    written into a temporary sibling folder and renamed into place, so `out_dir` is either
    complete or absent. Calibration data is loaded when the recipe needs it (GPTQ, AWQ,
    SmoothQuant, SparseGPT) or when `calibration` is given (then per-layer output errors are
    measured too). Raises `Cancelled` between layers when `cancelled()` turns true. Weights go
    into safetensors files of at most `shard_bytes` each (one bigger tensor gets its own).

    The model is never loaded whole: each decoder layer is read from the safetensors files just
    before it is compressed and written to the output's shards just after, so memory holds
    about one layer, its compressed form and the calibration activations (bench/RESULTS.md,
    "Compression memory")."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not empty")
    recipe = copy.deepcopy(load_recipe(recipe))
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    say = progress or (lambda done, message: None)
    check = cancelled or (lambda: False)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    from transformers import AutoTokenizer

    say(0.0, "loading model")
    # checks every file the checkpoint names (transformers opens what its tokenizer config names)
    source = LazyCheckpoint(model_dir)
    model = source.model
    plan = plan_model(model, recipe)
    calib, calib_info = None, None
    if recipe.needs_data or calibration is not None:
        say(0.01, "loading calibration data")
        cfg = (calibration or CalibrationConfig()).resolved(dev.type)
        calib = load_calibration(AutoTokenizer.from_pretrained(model_dir), cfg)
        calib_info = {**asdict(cfg), "tokens": calib.numel()}
    seconds["load"] = time.perf_counter() - start
    if check():
        raise Cancelled("cancelled before the first layer")

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        with ShardWriter(tmp, shard_bytes) as shards:
            runner = Runner(
                model,
                recipe,
                plan,
                dev,
                lambda done, msg: say(0.02 + 0.9 * done, msg),
                check,
                weights=source,
                layer_done=lambda i, layer: write_layer(shards, f"{plan.prefix}.{i}", layer, runner.result),
            )
            result = runner.run(calib)
            seconds["layers"] = time.perf_counter() - start - seconds["load"]
            if check():
                raise Cancelled("cancelled before saving")

            say(0.93, "saving")
            # the embeddings, final norm and LM head pass through as from_pretrained loads them
            for name in source.names:
                if not name.startswith(f"{plan.prefix}."):
                    shards.add(name, source.read([name])[name])
            shards.finish()
        write_config(model, result, tmp)
        copy_tokenizer_files(model_dir, tmp)
        (tmp / RECIPE_NAME).write_text(recipe.to_yaml())
        seconds["save"] = time.perf_counter() - start - seconds["load"] - seconds["layers"]
        seconds["total"] = time.perf_counter() - start
        report = CompressionReport(
            model=str(model_dir),
            recipe=recipe.name or "custom",
            scheme=_summary(recipe, result),
            schemes=_schemes(result),
            algorithms=[_ALGORITHM_NAMES[s.algorithm] for s in recipe.steps if _applied(s, plan)],
            sparsity=_sparsity(result),
            calibration=calib_info,
            device=str(dev),
            compute_dtype=str(runner.dtype).removeprefix("torch."),
            seconds=seconds,
            peak_memory={**_peak_memory(dev), "decoder_layers_resident": result.resident_layers},
            layers=[asdict(r) for r in result.layers],
            notes=result.notes,
            versions=_versions(),
            files=_files(tmp),
        )
        (tmp / REPORT_NAME).write_text(report.to_json())
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(1.0, "done")
    return report


def _applied(step, plan) -> bool:
    if isinstance(step, QuantizeStep):
        return any(s is step for s, _ in plan.quant.values())
    if isinstance(step, PruneStep):
        return any(s is step for s in plan.prune.values())
    return isinstance(step, SmoothStep)


def _scheme_name(scheme) -> str:
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

    def key(a):
        return None if a is None else (a.num_bits, a.type, a.symmetric, a.strategy, a.dynamic)

    for name, preset in PRESET_SCHEMES.items():
        pw, pa = preset.get("weights"), preset.get("input_activations")
        if key(pw) == key(scheme.weights) and key(pa) == key(scheme.input_activations):
            if pw.block_structure != scheme.weights.block_structure:
                return f"{name} (block {'x'.join(map(str, scheme.weights.block_structure))})"
            if pw.group_size == scheme.weights.group_size:
                return name
            return f"{name} (group_size {scheme.weights.group_size})"
    w = scheme.weights
    return f"{w.type}{w.num_bits} {w.strategy}" + (f" {w.group_size}" if w.group_size else "")


def _unique_schemes(result):
    unique = []
    for s in result.schemes.values():
        if all(s is not u for u in unique):
            unique.append(s)
    return unique


def _summary(recipe: Recipe, result) -> str:
    parts = sorted({p["structure"] for p in result.pruned.values()})
    parts += [_scheme_name(s) for s in _unique_schemes(result)]
    if result.kv_cache is not None:
        parts.append("FP8 KV cache")
    return " + ".join(parts) or "none"


def _schemes(result) -> list[dict]:
    return [s.model_dump(mode="json", exclude_none=True) for s in _unique_schemes(result)]


def _sparsity(result) -> dict | None:
    if not result.pruned:
        return None
    structures = sorted({p["structure"] for p in result.pruned.values()})
    return {
        "structure": structures[0] if len(structures) == 1 else structures,
        "saved_as": "dense weights with the zeros in place; config.json has no sparsity_config",
        "modules": sorted(result.pruned),
        "mean_sparsity": sum(p["sparsity"] for p in result.pruned.values()) / len(result.pruned),
    }


def _peak_memory(dev: torch.device) -> dict[str, int]:
    # ru_maxrss is KiB on Linux and the peak of the whole process so far
    peak = {"process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if dev.type == "cuda":
        peak["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(dev)
    return peak


def _versions() -> dict[str, str]:
    import compressed_tensors
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "compressed_tensors": compressed_tensors.__version__,
    }


def _files(folder: Path) -> list[dict]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        files.append(
            {"path": str(path.relative_to(folder)), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
        )
    return files
