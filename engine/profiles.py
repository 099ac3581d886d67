"""Named, versioned benchmark workloads. A profile's version changes whenever what it sends
changes, so two runs compare only when name, version and scale agree.

Lengths are in tokens. A profile runs once per concurrency level: `None` sends every request at
once (vLLM's request rate "inf", bounded only by the engine's own limits); a number N keeps at
most N requests in flight, each next request sent as one finishes (vLLM's --max-concurrency,
GuideLLM's "concurrent" profile).
"""

import math
from dataclasses import dataclass, replace

# The CPU runs a model several hundred times slower than a GPU: there every length and request
# count is multiplied by this, so a SmolLM2-sized job finishes in minutes. The factor is part of
# each run's recorded settings.
CPU_SCALE = 1 / 8
_MIN_REQUESTS = 4


@dataclass(frozen=True)
class Profile:
    name: str
    version: str
    description: str
    input_len: int
    output_len: int
    num_requests: int  # per run; with `requests_per_stream`, the most any level sends
    concurrency: tuple[int | None, ...] = (None,)
    # a level of N streams sends min(num_requests, N * requests_per_stream) requests, so each
    # stream serves several in a row and the level is measured in its steady state
    requests_per_stream: int | None = None
    max_duration_s: float | None = None  # a run also ends here; unfinished requests count as incomplete
    scale: float = 1.0

    def requests_at(self, level: int | None) -> int:
        if level is None or self.requests_per_stream is None:
            return self.num_requests
        return min(self.num_requests, level * self.requests_per_stream)

    def scaled(self, scale: float) -> "Profile":
        """The same profile with lengths and request counts multiplied by `scale`."""
        if scale == 1.0:
            return self
        if not 0 < scale <= 1:
            raise ValueError(f"scale must lie in (0, 1], not {scale}")
        return replace(
            self,
            input_len=max(1, math.ceil(self.input_len * scale)),
            output_len=max(2, math.ceil(self.output_len * scale)),
            num_requests=max(_MIN_REQUESTS, math.ceil(self.num_requests * scale)),
            scale=self.scale * scale,
        )

    def settings(self) -> dict:
        """Everything about the workload that must match for two runs to compare."""
        return {
            "profile": self.name,
            "profile_version": self.version,
            "scale": self.scale,
            "input_len": self.input_len,
            "output_len": self.output_len,
            "num_requests": self.num_requests,
            "concurrency": ["max" if c is None else c for c in self.concurrency],
            "requests_per_stream": self.requests_per_stream,
            "max_duration_s": self.max_duration_s,
        }


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("chat", "1", "chat: 512 tokens in, 256 out", 512, 256, 256),
        Profile("rag", "1", "retrieval-augmented generation: 4k in, 256 out", 4096, 256, 128),
        Profile("summarization", "1", "summarization: 2k in, 512 out", 2048, 512, 128),
        Profile("code", "1", "code completion: 256 in, 1k out", 256, 1024, 128),
        Profile("single-stream", "1", "single stream: one request at a time, latency", 512, 128, 32, concurrency=(1,)),
        Profile(
            "sweep",
            "1",
            "concurrency sweep: 1, 4, 16, 64, max",
            512,
            128,
            512,
            concurrency=(1, 4, 16, 64, None),
            requests_per_stream=4,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown benchmark profile {name!r}; known: {', '.join(PROFILES)}") from None


def parse_concurrency(text: str) -> tuple[int | None, ...]:
    """ "1,4,max" -> (1, 4, None)."""
    levels = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "max":
            levels.append(None)
        elif part.isdigit() and int(part) > 0:
            levels.append(int(part))
        else:
            raise ValueError(f"concurrency levels are positive integers or 'max', not {part!r}")
    return tuple(levels)
