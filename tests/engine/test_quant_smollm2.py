"""Every compress preset on the real SmolLM2-135M-Instruct: the engine's greedy output on 32
prompts equals transformers' for the same compressed checkpoint (CPU, float32), except after a
near-tie (top-2 logits closer than 1e-3), which is printed."""

from pathlib import Path

import pytest

from engine import LLM, SamplingParams
from tests.engine.helpers import mixed_prompts
from tests.engine.test_quant import assert_greedy_matches, load_transformers

pytestmark = pytest.mark.slow

PRESETS = ["w4a16", "w4a16-gptq", "w4a16-asym", "w8a16", "w8a8-int8", "fp8-dynamic", "2of4", "2of4-fp8", "2of4-w4a16"]
GREEDY = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)


@pytest.fixture(scope="session")
def smollm2_compressed(smollm2, fixtures_dir, tmp_path_factory):
    """Each preset compressed once per session, with a tiny calibration set where it needs one."""
    from compress import compress
    from compress.calibration import CalibrationConfig
    from compress.recipe import load_recipe

    data = fixtures_dir / "datasets" / "lambada_openai" / "test.jsonl"
    made: dict[str, Path] = {}

    def make(preset: str) -> Path:
        if preset not in made:
            out = tmp_path_factory.mktemp("smollm2") / preset
            calibration = CalibrationConfig(str(data), 2, 64) if load_recipe(preset).needs_data else None
            compress(smollm2, preset, out, calibration=calibration, device="cpu")
            made[preset] = out
        return made[preset]

    return make


@pytest.mark.parametrize("preset", PRESETS)
def test_smollm2_generates_what_transformers_generates_for_every_preset(smollm2_compressed, preset):
    path = smollm2_compressed(preset)
    llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=64, max_num_batched_tokens=512)
    prompts = mixed_prompts(llm.tokenizer, 32)
    outputs = llm.generate(prompts, GREEDY)
    ties = assert_greedy_matches(outputs, load_transformers(path), prompts, GREEDY.max_tokens)
    print(f"{preset}: {32 - len(ties)}/32 prompts equal" + (f"; near-ties: {ties}" if ties else ""))
