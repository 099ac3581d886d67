"""A checkpoint whose weights stay on disk until a module needs them.

The model is built from its config with every parameter on the meta device (buffers such as
the rotary frequencies are computed, not stored, and stay real), the way
`from_pretrained(dtype="auto")` builds it: the config's dtype (else the first floating-point
weight's), tied embeddings tied, the generation config read from the folder. `load` reads one
module's tensors from the safetensors files and `release` sends them back to meta, so a
compression run holds one decoder layer at a time instead of the model.
"""

from pathlib import Path

import torch
from safetensors import safe_open

from common.checkpoint_files import weight_files


class LazyCheckpoint:
    def __init__(self, model_dir: Path):
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
        from transformers.modeling_utils import remove_tied_weights_from_state_dict

        files = weight_files(model_dir)  # refuses files outside the folder before anything is read
        if not files:
            raise ValueError(f"{model_dir.name}: no safetensors weights (only safetensors checkpoints are compressed)")
        self.file_of: dict[str, Path] = {}
        shapes: dict[str, list[int]] = {}
        for path in files:
            with safe_open(str(path), "pt") as f:
                for name in f.keys():
                    if self.file_of.setdefault(name, path) != path:
                        raise ValueError(f"{model_dir.name}: tensor {name!r} is in more than one weight file")
                    shapes[name] = f.get_slice(name).get_shape()
        config = AutoConfig.from_pretrained(model_dir)
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config, dtype=config.dtype or _first_float_dtype(files[0]))
        # init_empty_weights re-creates each parameter it registers, which unties tied ones
        model.tie_weights()
        if model.can_generate():
            try:
                model.generation_config = GenerationConfig.from_pretrained(model_dir)
            except OSError:  # no generation_config.json: from_pretrained falls back to config.json's fields
                model.generation_config = GenerationConfig.from_pretrained(
                    model_dir, config_file_name="config.json", _from_model_config=True
                )
        self.model = model.eval()
        # what save_pretrained writes: every state entry, a tied one once
        self.names = list(remove_tied_weights_from_state_dict(model.state_dict(), model))
        missing = [n for n in self.names if n not in self.file_of]
        if missing:
            raise ValueError(
                f"{model_dir.name}: the weight files lack {', '.join(missing[:3])}"
                f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''} (renamed or legacy tensor names are not supported)"
            )
        self._expected = model.state_dict()
        for name in self.names:
            if shapes[name] != list(self._expected[name].shape):
                raise ValueError(
                    f"{self.file_of[name].name}: {name} has shape {shapes[name]}, "
                    f"the config makes it {list(self._expected[name].shape)}"
                )

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The named tensors cast to the model's dtype. Each file is mapped only while it is
        read, so what was read leaves memory with its tensor."""
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self.file_of[name], []).append(name)
        out = {}
        for path, in_file in by_file.items():
            with safe_open(str(path), "pt") as f:
                for name in in_file:
                    out[name] = f.get_tensor(name).to(self._expected[name].dtype)
        return out

    def load(self, module: torch.nn.Module, prefix: str) -> None:
        """Give `module` (named `prefix` in the model) its weights from the checkpoint."""
        local = list(module.state_dict())
        if local:
            tensors = self.read([f"{prefix}.{k}" for k in local])
            module.load_state_dict({k: tensors[f"{prefix}.{k}"] for k in local}, assign=True)

    def release(self, module: torch.nn.Module) -> None:
        if module.state_dict():
            module.to("meta")


def _first_float_dtype(path: Path) -> torch.dtype:
    """from_pretrained's dtype for a config that names none: the first floating-point tensor's."""
    from transformers.modeling_utils import str_to_torch_dtype

    with safe_open(str(path), "pt") as f:
        dtypes = [str_to_torch_dtype.get(f.get_slice(name).get_dtype()) for name in f.keys()]
    dtypes = [d for d in dtypes if d is not None]
    # as transformers' get_state_dict_dtype: 8-bit floats cannot be a default dtype
    floats = [d for d in dtypes if d.is_floating_point and d.itemsize > 1]
    return floats[0] if floats else (dtypes[0] if dtypes else torch.float32)
