"""Writing the checkpoint in the compressed-tensors format, by compressed-tensors itself.

Each quantized Linear gets its scheme and qparams attached the way llm-compressor leaves a
model after calibration; its weight is set to the float32 dequantized values, which
compressed-tensors' compressor re-quantizes to exactly our codes (they lie on the grid) and
packs. `ModelCompressor` then derives `quantization_config` (config groups, ignore list,
format) from the attached schemes and writes it into config.json.
"""

import shutil
from pathlib import Path

import torch
from compressed_tensors import ModelCompressor
from compressed_tensors.compressors.base import compress_module
from compressed_tensors.quantization import QuantizationStatus
from compressed_tensors.quantization.lifecycle.initialize import initialize_module_for_quantization

from common.checkpoint_files import check_checkpoint_folder
from compress.pipeline import RunResult

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)


@torch.no_grad()
def save_checkpoint(model: torch.nn.Module, result: RunResult, out: Path) -> None:
    """Write config.json and safetensors weights into `out`. Consumes `model`: its quantized
    Linears are replaced by their packed parameters."""
    compressor = None
    if result.quantized:
        for name, qw in result.quantized.items():
            module = model.get_submodule(name)
            initialize_module_for_quantization(module, result.schemes[name], force_zero_point=True)
            module.weight_scale.data = qw.scale.to(module.weight_scale.dtype)
            if qw.zero_point is not None:
                module.weight_zero_point.data = qw.zero_point.to(module.weight_zero_point.dtype)
            module.weight = torch.nn.Parameter(qw.dequant, requires_grad=False)
            module.quantization_status = QuantizationStatus.FROZEN
            compress_module(module)
        compressor = ModelCompressor.from_pretrained_model(model)
    model.save_pretrained(out)
    if compressor is not None:
        compressor.update_config(str(out))


def copy_tokenizer_files(src: Path, out: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
            copied.append(name)
    return copied


@torch.no_grad()
def load_dequantized(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a compressed-tensors checkpoint with every quantized Linear decoded
    back to a dense `weight` by compressed-tensors' own decompressors. This reads checkpoints
    transformers cannot load itself: with compressed-tensors 0.20 its loader rejects packed
    asymmetric zero points."""
    import json

    from compressed_tensors.compressors.base import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_name
    from safetensors.torch import load_file

    path = Path(path)
    check_checkpoint_folder(path)
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(f))
    qcfg = json.loads((path / "config.json").read_text()).get("quantization_config")
    if qcfg is None:
        return tensors
    config = QuantizationConfig.model_validate(qcfg)
    prefixes = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    out = dict(tensors)
    for prefix in prefixes:
        # a target is a class name ("Linear", which every quantized module here is) or a name / re: pattern
        scheme = next(
            s for s in config.config_groups.values() if any(t == "Linear" or match_name(prefix, t) for t in s.targets)
        )
        fmt = scheme.format or config.format
        local = {
            k[len(prefix) + 1 :]: v
            for k, v in tensors.items()
            if k.startswith(prefix + ".") and "." not in k[len(prefix) + 1 :]
        }
        for k in local:
            out.pop(f"{prefix}.{k}")
        decoded = BaseCompressor.get_value_from_registry(fmt).decompress(local, scheme)
        out[f"{prefix}.weight"] = decoded["weight"]
    return out
