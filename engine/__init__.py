"""The built-in paged, continuously batched inference engine (see ARCHITECTURE.md, "The engine")."""

from engine.config import SUPPORTED_ARCHITECTURES, UnsupportedModelError
from engine.llm import LLM, CancelledError, EngineStats, RequestOutput, ScoreResult, StreamEvent
from engine.loader import WeightsError
from engine.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "SUPPORTED_ARCHITECTURES",
    "CancelledError",
    "EngineStats",
    "RequestOutput",
    "SamplingParams",
    "ScoreResult",
    "StreamEvent",
    "UnsupportedModelError",
    "WeightsError",
]
