"""The built-in paged, continuously batched inference engine (see docs/architecture.md, "The engine")."""

from common.work import Cancelled
from engine.config import SUPPORTED_ARCHITECTURES, UnsupportedModelError
from engine.llm import LLM, EngineStats, RequestOutput, ScoreResult, StreamEvent
from engine.loader import WeightsError
from engine.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "SUPPORTED_ARCHITECTURES",
    "Cancelled",
    "EngineStats",
    "RequestOutput",
    "SamplingParams",
    "ScoreResult",
    "StreamEvent",
    "UnsupportedModelError",
    "WeightsError",
]
