"""Writing the checkpoint in the compressed-tensors format, by compressed-tensors itself.

Each quantized Linear gets its scheme and qparams attached the way llm-compressor leaves a
model after calibration; its weight is set to the float32 dequantized values, which
compressed-tensors' compressor re-quantizes to exactly our codes (they lie on the grid) and
packs. `ModelCompressor` then derives `quantization_config` (config groups, ignore list,
format) from the attached schemes and writes it into config.json.

`compress()` streams: each decoder layer is packed and its tensors written (`write_layer`) as
soon as it is compressed, into safetensors shards filled up to `SHARD_BYTES` (`ShardWriter`),
then the tensors outside the layers and the configs (`write_config`). A single shard is
`model.safetensors` byte for byte as `save_pretrained` writes it; more get the usual
`model-0000k-of-0000n.safetensors` names and index. `save_checkpoint` writes a model held
whole in memory through `save_pretrained` (the tests' reference for the streamed files).
"""

import json
import os
import shutil
import struct
from pathlib import Path

import torch
from compressed_tensors import ModelCompressor
from compressed_tensors.compressors.base import compress_module
from compressed_tensors.quantization import QuantizationScheme, QuantizationStatus
from compressed_tensors.quantization.lifecycle.initialize import initialize_module_for_quantization

from common.checkpoint_files import INDEX_NAME, weight_files
from compress.pipeline import RunResult
from compress.quant import QuantizedWeight

WEIGHTS_NAME = "model.safetensors"
SHARD_BYTES = 2 * 1024**3
# safetensors' order of tensors in a file: by dtype, widest first (its Dtype enum, descending),
# then by name; it keeps every tensor aligned to its element size
_SAFETENSORS_DTYPES = {
    torch.uint64: "U64",
    torch.int64: "I64",
    torch.float64: "F64",
    torch.float32: "F32",
    torch.uint32: "U32",
    torch.int32: "I32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.uint16: "U16",
    torch.int16: "I16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_DTYPE_RANK = {dtype: rank for rank, dtype in enumerate(_SAFETENSORS_DTYPES)}

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
def pack_linear(module: torch.nn.Linear, qw: QuantizedWeight, scheme: QuantizationScheme) -> None:
    """Replace a quantized Linear's weight by its packed parameters."""
    initialize_module_for_quantization(module, scheme, force_zero_point=True)
    module.weight_scale.data = qw.scale.to(module.weight_scale.dtype)
    if qw.zero_point is not None:
        module.weight_zero_point.data = qw.zero_point.to(module.weight_zero_point.dtype)
    if qw.input_scale is not None:
        module.input_scale.data = qw.input_scale.to(module.input_scale.dtype)
    if qw.global_scale is not None:
        module.weight_global_scale.data = qw.global_scale.to(module.weight_global_scale.dtype)
    module.weight = torch.nn.Parameter(qw.dequant, requires_grad=False)
    module.quantization_status = QuantizationStatus.FROZEN
    compress_module(module)


@torch.no_grad()
def save_checkpoint(model: torch.nn.Module, result: RunResult, out: Path) -> None:
    """Write config.json and safetensors weights of a model held whole in memory into `out`.
    Consumes `model`: its quantized Linears are replaced by their packed parameters."""
    compressor = None
    if result.quantized:
        for name, qw in result.quantized.items():
            pack_linear(model.get_submodule(name), qw, result.schemes[name])
        compressor = ModelCompressor.from_pretrained_model(model)
    model.save_pretrained(out)
    if compressor is not None:
        compressor.update_config(str(out))
        _record_kv_cache(out, result)


@torch.no_grad()
def write_layer(shards: "ShardWriter", prefix: str, layer: torch.nn.Module, result: RunResult) -> None:
    """Pack the quantized Linears of a compressed decoder layer (named `prefix`) and write all
    its tensors. Its quantized weights leave `result`: only the schemes stay."""
    for local, module in layer.named_modules():
        qw = result.quantized.pop(f"{prefix}.{local}", None)
        if qw is not None:
            pack_linear(module, qw, result.schemes[f"{prefix}.{local}"])
    for name, tensor in layer.state_dict(prefix=f"{prefix}.").items():
        shards.add(name, tensor)


def write_config(model: torch.nn.Module, result: RunResult, out: Path) -> None:
    """config.json and generation_config.json as `save_checkpoint` writes them, from a model
    whose layers were written by `write_layer` (their parameters may be gone to meta)."""
    # what save_pretrained records before it saves the config
    model.config.dtype = str(model.dtype).removeprefix("torch.")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    if model.can_generate():
        model.generation_config.save_pretrained(out)
    if result.schemes:
        ModelCompressor.from_pretrained_model(model).update_config(str(out))
        _record_kv_cache(out, result)


def _record_kv_cache(out: Path, result: RunResult) -> None:
    """config.json's `kv_cache_scheme`, as llm-compressor writes it (compressed-tensors derives
    it only from attention modules it has quantized itself); the scales are each layer's
    `self_attn.k_scale` / `v_scale`."""
    if result.kv_cache is None:
        return
    path = out / "config.json"
    config = json.loads(path.read_text())
    config["quantization_config"]["kv_cache_scheme"] = result.kv_cache.model_dump(mode="json")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


class ShardWriter:
    """safetensors shards written as tensors arrive, each up to `shard_bytes` (a bigger tensor
    gets a shard of its own). A tensor's bytes go to a scratch file at once; closing a shard
    writes its header, then copies the bytes in safetensors' order with copy_file_range, so
    this process never holds more than the tensor being added."""

    def __init__(self, folder: Path, shard_bytes: int = SHARD_BYTES):
        self.folder, self.shard_bytes = folder, shard_bytes
        self.shards: list[tuple[Path, list[str]]] = []  # closed shards and their tensors, in file order
        self.total_size = self.total_numel = 0
        self._written: set[str] = set()
        self._entries: dict[str, tuple[torch.dtype, list[int], int, int]] = {}  # dtype, shape, scratch offset, bytes
        self._scratch = None
        self._size = 0

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        if self._scratch is not None:
            self._scratch.close()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach().cpu().contiguous()
        if t.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: safetensors cannot store {t.dtype}")
        if name in self._written:
            raise ValueError(f"{name} is written twice")
        self._written.add(name)
        nbytes = t.numel() * t.element_size()
        if self._entries and self._size + nbytes > self.shard_bytes:
            self._close()
        if self._scratch is None:
            self._scratch = open(self.folder / f".shard-{len(self.shards) + 1}.scratch", "w+b")
        self._entries[name] = (t.dtype, list(t.shape), self._size, nbytes)
        self._scratch.write(t.reshape(-1).view(torch.uint8).numpy().data)
        self._size += nbytes
        self.total_size += nbytes
        self.total_numel += t.numel()

    def finish(self) -> None:
        """Close the last shard and give the shards their names (and an index when there are several)."""
        if self._entries or not self.shards:
            self._close()
        if len(self.shards) == 1:
            os.replace(self.shards[0][0], self.folder / WEIGHTS_NAME)
            return
        weight_map = {}
        for k, (path, names) in enumerate(self.shards, 1):
            final = f"model-{k:05d}-of-{len(self.shards):05d}.safetensors"
            os.replace(path, self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
        # as save_pretrained writes its index
        index = {
            "metadata": {"total_parameters": self.total_numel, "total_size": self.total_size},
            "weight_map": weight_map,
        }
        (self.folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    def _close(self) -> None:
        order = sorted(self._entries, key=lambda n: (_DTYPE_RANK[self._entries[n][0]], n))
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name in order:
            dtype, shape, _, nbytes = self._entries[name]
            header[name] = {
                "dtype": _SAFETENSORS_DTYPES[dtype],
                "shape": shape,
                "data_offsets": [offset, offset + nbytes],
            }
            offset += nbytes
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
        path = self.folder / f".shard-{len(self.shards) + 1}.safetensors"
        if self._scratch is not None:
            self._scratch.flush()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            f.flush()
            for name in order:
                _, _, start, nbytes = self._entries[name]
                _copy_range(self._scratch, f, start, nbytes)
        if self._scratch is not None:
            self._scratch.close()
            os.unlink(self._scratch.name)
        self.shards.append((path, order))
        self._entries, self._scratch, self._size = {}, None, 0


def _copy_range(src, dst, start: int, nbytes: int) -> None:
    """Append `nbytes` of `src` from `start` to `dst`, inside the kernel."""
    done = 0
    while done < nbytes:
        n = os.copy_file_range(src.fileno(), dst.fileno(), nbytes - done, start + done)
        if n == 0:
            raise OSError(f"{src.name} ended before {start + nbytes} bytes")
        done += n


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
    tensors: dict[str, torch.Tensor] = {}
    for f in weight_files(path):
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
