"""Builds a model from a Hugging Face checkpoint directory (config.json + safetensors)."""

import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from common.checkpoint_files import (
    INDEX_NAME,
    NotACheckpointFile,
    check_checkpoint_folder,
)
from engine.config import ModelConfig
from engine.layers.attention import PagedAttention
from engine.layers.linear import Linear, copy_weight, linear_method_for
from engine.layers.moe import FusedExperts
from engine.layers.norm import RMSNorm
from engine.layers.quant import fuse_input_quantization, sparsify_two_of_four
from engine.models.llama import LlamaForCausalLM

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# buffers some exporters write that carry nothing the engine needs (rotary frequencies)
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
# one expert's projection of a sparse block, which the block keeps stacked with the others'
_EXPERT_TENSOR = re.compile(r"(?P<experts>.+\.experts)\.(?P<expert>\d+)\.(?P<projection>\w+)\.weight")
# a KV-cache scale under each name checkpoints give it: compressed-tensors' self_attn.k_scale (and
# k_zero_point), its older k_proj.output_scale, ModelOpt's k_proj.k_scale (the same for v)
_KV_CACHE_TENSOR = re.compile(
    r"(?P<attention>.+\.self_attn)\.(?:(?P<kv>[kv])_(?P<kind>scale|zero_point)"
    r"|(?P<proj>[kv])_proj\.(?:output_scale|(?P=proj)_scale))"
)


class WeightsError(ValueError):
    """The checkpoint's weight files are missing, unsafe, or do not fit the model."""


def safetensors_files(model_dir: Path) -> list[Path]:
    try:
        named = check_checkpoint_folder(model_dir)
    except NotACheckpointFile as exc:
        raise WeightsError(str(exc)) from None
    if (model_dir / INDEX_NAME).is_file():
        return sorted({path for meta, path in named if meta == INDEX_NAME})
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise WeightsError(
            f"{model_dir} has only pickle weight files ({', '.join(pickles)}); they can run arbitrary code "
            "when loaded and are refused: convert the checkpoint to safetensors"
        )
    raise WeightsError(f"no safetensors weights in {model_dir}")


def iter_checkpoint(model_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    for path in safetensors_files(model_dir):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)


def load_model(model_dir: str | Path, dtype: torch.dtype, device: torch.device, max_position: int) -> LlamaForCausalLM:
    model_dir = Path(model_dir)
    cfg = ModelConfig.from_pretrained(model_dir)
    method = linear_method_for(cfg.quantization)
    with torch.device(device):
        model = LlamaForCausalLM(cfg, max_position, method, dtype)
    load_weights(model, iter_checkpoint(model_dir))
    for module in model.modules():
        if isinstance(module, Linear):
            module.method.process_weights_after_loading(module)
        elif isinstance(module, RMSNorm):
            module.process_weights_after_loading()
    if device.type == "cuda":
        # 2:4 sparse models are saved dense (compress's 2of4 presets): found by their weights
        sparsify_two_of_four(model)
    if cfg.quantization:  # only quantized layers take quantized inputs; MoE ones never are (engine.config)
        fuse_input_quantization(model)
    return model.eval()


def load_weights(model: LlamaForCausalLM, weights: Iterator[tuple[str, torch.Tensor]]) -> None:
    params = dict(model.named_parameters())
    loaded: set[str] = set()
    for name, tensor in weights:
        if name.endswith(_IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # some exporters write the tied matrix twice
        ours = ".".join(model.checkpoint_names.get(part, part) for part in name.split("."))
        kv_cache = _KV_CACHE_TENSOR.fullmatch(ours)
        if kv_cache:
            attention = _submodule(model, f"{kv_cache['attention']}.attn", name)
            if not isinstance(attention, PagedAttention):
                raise WeightsError(f"checkpoint tensor {name!r} has no place in {model.config.architecture}")
            attention.load_kv_scale(kv_cache["kv"] or kv_cache["proj"], kv_cache["kind"] or "scale", tensor, name)
            continue
        expert = _EXPERT_TENSOR.fullmatch(ours)
        if expert:
            experts = _submodule(model, expert["experts"], name)
            if not isinstance(experts, FusedExperts):
                raise WeightsError(f"checkpoint tensor {name!r} has no place in {model.config.architecture}")
            experts.load_expert_weight(int(expert["expert"]), expert["projection"], tensor, name)
            loaded.add(f"{expert['experts']}.{expert['projection']}#{int(expert['expert'])}")
            continue
        module_path, _, param_name = ours.rpartition(".")
        parent, _, leaf = module_path.rpartition(".")
        shard = None
        if leaf in model.packed_modules:
            leaf, shard = model.packed_modules[leaf]
            module_path = f"{parent}.{leaf}"
        module = _submodule(model, module_path, name)
        if isinstance(module, Linear):
            module.load_weight(param_name, tensor, shard)
        elif f"{module_path}.{param_name}" in params:
            copy_weight(params[f"{module_path}.{param_name}"], tensor, name)
        else:
            raise WeightsError(f"checkpoint tensor {name!r} has no place in {model.config.architecture}")
        loaded.add(f"{module_path}.{param_name}" if shard is None else f"{module_path}.{param_name}#{shard}")
    expected = set()
    for pname in params:
        module_path, _, param_name = pname.rpartition(".")
        module = model.get_submodule(module_path)
        if isinstance(module, FusedExperts):
            experts = range(module.num_experts)
            expected.update(f"{module_path}.{p}#{e}" for p in module.projections for e in experts)
        elif isinstance(module, Linear) and len(module.output_sizes) > 1:
            expected.update(f"{pname}#{i}" for i in range(len(module.output_sizes)))
        else:
            expected.add(pname)
    missing = sorted(expected - loaded)
    if missing:
        raise WeightsError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")


def _submodule(model: LlamaForCausalLM, path: str, name: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise WeightsError(f"checkpoint tensor {name!r} has no place in {model.config.architecture}") from None
