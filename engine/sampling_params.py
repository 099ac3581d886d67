from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    """How to pick each next token and when to stop (vLLM's names and defaults).

    temperature 0 is greedy; top_k <= 0 and top_p 1 disable those filters. `seed` makes one
    request's samples reproducible whatever else runs beside it. `logprobs`: None for none, else
    the log-prob of each sampled token plus that many top alternatives (0: the sampled one only).
    Stop strings end the text before them; stop token ids (and EOS unless `ignore_eos`) are kept
    in `token_ids` and left out of the text.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be None or >= 0, got {self.logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
