"""Decides, each step, which requests compute how many tokens (vLLM v1's scheme).

There are no prefill and decode phases: every request has `num_computed_tokens` and wants to
catch up with `num_tokens`. One token budget per step is spent on running requests first (a
decode takes 1 token, an unfinished prefill takes the next chunk), then on admitting waiting
requests (after a prefix-cache lookup), so prefill chunks and decodes share a step. When the
KV cache cannot hold a running request's next tokens, the most recently admitted request is
preempted: its blocks are freed and it goes back to the front of the queue to be recomputed.
"""

from collections import deque
from dataclasses import dataclass, field

from engine.kv_cache import KVCacheManager
from engine.sequence import Sequence, Status


@dataclass
class ScheduledBatch:
    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    num_cache_hit_tokens: int = 0
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def __len__(self) -> int:
        return len(self.seqs)


class Scheduler:
    def __init__(self, kv: KVCacheManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        if self.kv.blocks_needed(seq.num_tokens + (seq.score_from is None)) > self.kv.num_blocks:
            raise ValueError(
                f"a request of {seq.num_tokens} tokens needs more than the {self.kv.num_blocks} KV-cache "
                f"blocks of {self.kv.block_size} tokens there are"
            )
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num_new = min(seq.num_tokens - seq.num_computed_tokens, budget)
            while not self.kv.allocate(seq, num_new):
                victim = self.running.pop()
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    break
            else:
                batch.seqs.append(seq)
                batch.num_new_tokens.append(num_new)
                budget -= num_new
                i += 1
        # Admitting while preempting would only thrash: the freed blocks go to running requests.
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not batch.preempted:
            seq = self.waiting[0]
            hits = self.kv.computed_blocks(seq)
            num_hit_tokens = len(hits) * self.kv.block_size
            num_new = min(seq.num_tokens - num_hit_tokens, budget)
            if not self.kv.allocate(seq, num_new, hits):
                break
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(num_new)
            batch.num_cache_hit_tokens += num_hit_tokens
            if not seq.num_preemptions:
                seq.num_cached_tokens = num_hit_tokens
            budget -= num_new
        return batch

    def _preempt(self, seq: Sequence) -> None:
        self.kv.free(seq)
        seq.status = Status.WAITING
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        # log-probs of scored prompt tokens are read again when the prompt is recomputed
        seq.score_logprobs.clear()
        seq.score_greedy.clear()
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        self.kv.free(seq)
        self.running.remove(seq)

    def abort_all(self) -> None:
        for seq in self.running:
            self.kv.free(seq)
        for seq in [*self.running, *self.waiting]:
            seq.status = Status.FINISHED
            seq.finish_reason = "abort"
        self.running.clear()
        self.waiting.clear()
