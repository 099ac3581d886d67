"""The scheduler's decisions, driven by a fake model that 'computes' whatever is scheduled."""

from engine.kv_cache import KVCacheManager
from engine.sampling_params import SamplingParams
from engine.scheduler import ScheduledBatch, Scheduler
from engine.sequence import Sequence, Status

BS = 4


def make(num_blocks: int = 64, max_num_seqs: int = 16, budget: int = 32, caching: bool = False) -> Scheduler:
    return Scheduler(KVCacheManager(num_blocks, BS, caching), max_num_seqs, budget)


def request(seq_id: int, prompt_len: int, max_tokens: int) -> Sequence:
    return Sequence(seq_id, [seq_id * 1000 + i for i in range(prompt_len)], SamplingParams(max_tokens=max_tokens))


def step(sched: Scheduler) -> ScheduledBatch:
    """One engine step: every scheduled token is computed; a sequence that caught up gets a token."""
    batch = sched.schedule()
    for seq, n in zip(batch.seqs, batch.num_new_tokens):
        seq.num_computed_tokens += n
        if seq.num_computed_tokens == seq.num_tokens:
            seq.token_ids.append(7)
            if len(seq.output_token_ids) >= seq.params.max_tokens:
                sched.finish(seq, "length")
    return batch


def drain(sched: Scheduler, limit: int = 1000) -> list[ScheduledBatch]:
    batches = []
    while sched.has_unfinished():
        batches.append(step(sched))
        assert len(batches) < limit, "no progress"
    return batches


def test_it_never_schedules_more_tokens_or_sequences_than_allowed():
    sched = make(budget=20, max_num_seqs=3)
    seqs = [request(i, 5 + 3 * i, 4) for i in range(8)]
    for s in seqs:
        sched.add(s)
    batches = drain(sched)
    assert all(b.total_tokens <= 20 for b in batches)
    assert all(len(b) <= 3 for b in batches)
    assert max(b.total_tokens for b in batches) == 20  # the budget is actually used
    assert all(s.finish_reason == "length" and len(s.output_token_ids) == 4 for s in seqs)


def test_it_chunks_a_long_prompt_and_decodes_others_in_the_same_step():
    sched = make(budget=16)
    short = request(0, 3, 10)
    sched.add(short)
    step(sched)  # prefill of the short request
    long = request(1, 40, 2)
    sched.add(long)
    chunks = []
    while long.num_computed_tokens < 40:
        batch = step(sched)
        sizes = dict(zip((s.seq_id for s in batch.seqs), batch.num_new_tokens))
        assert sizes[0] == 1  # the running request decodes in every step
        chunks.append(sizes[1])
    # the long prompt took the rest of each step's budget: 15, 15, then the remainder
    assert chunks == [15, 15, 10]
    assert len(long.output_token_ids) == 1


def test_it_preempts_the_newest_request_and_resumes_it_by_recomputing():
    # 6 blocks of 4 tokens; three requests growing to 4 + 6 = 10 tokens (3 blocks) each cannot all fit
    sched = make(num_blocks=6, budget=64)
    seqs = [request(i, 4, 6) for i in range(3)]
    for s in seqs:
        sched.add(s)
    batches = drain(sched)
    preempted = [s for b in batches for s in b.preempted]
    assert preempted, "the pool was meant to run out"
    assert seqs[0] not in preempted  # the oldest request always keeps its blocks
    victim = preempted[0]
    preempted_at = next(i for i, b in enumerate(batches) if victim in b.preempted)
    resumed = next(b for b in batches[preempted_at + 1 :] if victim in b.seqs)
    # on resumption it recomputes its prompt and the tokens it had generated, in one go
    assert resumed.num_new_tokens[resumed.seqs.index(victim)] > 4
    assert all(s.finish_reason == "length" and len(s.output_token_ids) == 6 for s in seqs)
    assert victim.num_preemptions >= 1
    assert sched.kv.num_free_blocks == 6


def test_it_puts_a_preempted_request_back_at_the_front_of_the_queue():
    sched = make(num_blocks=4, budget=64, max_num_seqs=2)
    a, b, c = request(0, 4, 8), request(1, 4, 8), request(2, 4, 8)
    for s in (a, b, c):
        sched.add(s)
    for _ in range(20):
        if step(sched).preempted:
            break
    assert sched.waiting[0] is b and sched.waiting[1] is c
    assert b.status is Status.WAITING and b.num_computed_tokens == 0 and b.block_table == []


def test_it_lets_no_request_starve_while_new_ones_keep_arriving():
    sched = make(num_blocks=12, budget=12, max_num_seqs=4)
    first = request(0, 8, 30)
    sched.add(first)
    arrivals = iter(range(1, 200))
    finished_order = []
    live = {first}
    for _ in range(400):
        if len(sched.waiting) < 3:
            new = request(next(arrivals), 6, 3)
            sched.add(new)
            live.add(new)
        step(sched)
        for s in sorted(live, key=lambda s: s.seq_id):
            if s.is_finished:
                finished_order.append(s.seq_id)
                live.remove(s)
        if first.is_finished:
            break
    assert first.is_finished, "the first request starved behind later arrivals"
    # later arrivals wait their turn in arrival order
    waiting_ids = [s.seq_id for s in sched.waiting]
    assert waiting_ids == sorted(waiting_ids)
    others = [i for i in finished_order if i != 0]
    assert others and others == sorted(others)


def test_it_fills_the_budget_with_waiting_requests_after_running_ones():
    sched = make(budget=10)
    a = request(0, 6, 5)
    sched.add(a)
    step(sched)
    b, c = request(1, 6, 5), request(2, 6, 5)
    sched.add(b)
    sched.add(c)
    batch = step(sched)
    assert batch.seqs == [a, b, c]
    assert batch.num_new_tokens == [1, 6, 3]  # decode first, then b whole, then a chunk of c
