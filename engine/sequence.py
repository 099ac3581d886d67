import enum
import time
from dataclasses import dataclass, field

import torch

from engine.sampling_params import SamplingParams


class Status(enum.Enum):
    WAITING = enum.auto()
    RUNNING = enum.auto()
    FINISHED = enum.auto()


@dataclass(eq=False)
class Sequence:
    """One request: its tokens, how many of them are in the KV cache, and its results so far.

    A scoring request (`score_from` set) only reads log-probs of its own prompt tokens
    `token_ids[score_from:]` and finishes when its prompt is computed.
    """

    seq_id: int
    token_ids: list[int]
    params: SamplingParams
    score_from: int | None = None
    num_prompt_tokens: int = 0
    num_computed_tokens: int = 0
    status: Status = Status.WAITING
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)
    generator: torch.Generator | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    token_times: list[float] = field(default_factory=list)
    logprobs: list[dict[int, float]] = field(default_factory=list)
    score_logprobs: list[float] = field(default_factory=list)
    score_greedy: list[bool] = field(default_factory=list)
    text: str = ""
    num_cached_tokens: int = 0  # prompt tokens found in the prefix cache at first admission
    num_preemptions: int = 0
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        self.num_prompt_tokens = len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def is_finished(self) -> bool:
        return self.status is Status.FINISHED

    @property
    def max_cached_tokens(self) -> int:
        """How many leading tokens may come from the prefix cache: the last token is always
        computed (its logits pick the next token), and so is every token whose log-prob is read."""
        limit = self.num_tokens - 1
        if self.score_from is not None:
            limit = min(limit, self.score_from - 1)
        return max(limit, 0)
