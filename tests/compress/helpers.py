import copy
from pathlib import Path

import torch

from compress.api import RECIPE_NAME
from compress.calibration import CalibrationConfig, load_calibration
from compress.pipeline import Runner, RunResult, plan_model
from compress.quant import attach_activation_quant
from compress.recipe import load_recipe
from compress.save import save_checkpoint


def compress_in_process(model_dir: Path, recipe: str, out: Path, data: Path, samples: int = 4, seq_len: int = 64):
    """Run the pipeline on the whole model loaded in memory and save it as transformers does,
    with the recipe as planned, returning our fake-quantized model (dequantized weights as the
    pipeline left them, plus our own activation quantization) taken before saving."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
    r = load_recipe(recipe)
    calib = load_calibration(
        AutoTokenizer.from_pretrained(model_dir), CalibrationConfig(str(data), samples, seq_len).resolved("cpu")
    )
    result: RunResult = Runner(model, r, plan_model(model, r), torch.device("cpu")).run(calib)
    reference = copy.deepcopy(model)
    linears = {n: m for n, m in reference.named_modules() if isinstance(m, torch.nn.Linear)}
    attach_activation_quant(linears, result.schemes, {n: q.input_scale for n, q in result.quantized.items()})
    save_checkpoint(model, result, out)
    (out / RECIPE_NAME).write_text(r.to_yaml())
    return reference, result


def targeted_weights(model: torch.nn.Module, names) -> dict[str, torch.Tensor]:
    return {n: model.get_submodule(n).weight.detach() for n in names}
