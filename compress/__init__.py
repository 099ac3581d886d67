"""Compression library: quantization (RTN, GPTQ, AWQ, SmoothQuant; W4A16, W8A16, W8A8-INT8,
FP8-dynamic) and 2:4 sparsity (SparseGPT, magnitude), applied layer by layer and saved in the
compressed-tensors format that transformers and vLLM load.

    from compress import compress, load_recipe, PRESETS
    report = compress("path/to/model", "w4a16-gptq", "path/to/out")
"""

from common.work import Cancelled
from compress.api import CompressionReport, compress
from compress.calibration import CalibrationConfig, CalibrationError
from compress.recipe import PRESETS, Recipe, load_recipe

__all__ = [
    "PRESETS",
    "CalibrationConfig",
    "CalibrationError",
    "Cancelled",
    "CompressionReport",
    "Recipe",
    "compress",
    "load_recipe",
]
