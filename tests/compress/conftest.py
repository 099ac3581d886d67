import shutil
from pathlib import Path

import pytest
import torch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def make_model(tmp_path_factory, stories260k):
    """A random Llama-family checkpoint (512-token vocabulary, stories260k's tokenizer) with the
    given widths, written once per argument set."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen3Config

    made: dict[tuple, Path] = {}

    def make(
        hidden: int = 128,
        intermediate: int = 256,
        layers: int = 2,
        arch: str = "llama",
        dtype: torch.dtype = torch.bfloat16,
    ) -> Path:
        key = (hidden, intermediate, layers, arch, dtype)
        if key not in made:
            cls = {"llama": LlamaConfig, "qwen3": Qwen3Config, "gemma3": Gemma3TextConfig}[arch]
            config = cls(
                hidden_size=hidden,
                intermediate_size=intermediate,
                num_hidden_layers=layers,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=512,
                max_position_embeddings=512,
                head_dim=hidden // 4,
                tie_word_embeddings=False,
            )
            torch.manual_seed(0)
            path = tmp_path_factory.mktemp(f"{arch}-{hidden}-{intermediate}")
            AutoModelForCausalLM.from_config(config).to(dtype).save_pretrained(path)
            for name in TOKENIZER_FILES:
                shutil.copy(stories260k / name, path / name)
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="session")
def lambada(fixtures_dir: Path) -> Path:
    return fixtures_dir / "datasets" / "lambada_openai" / "test.jsonl"
