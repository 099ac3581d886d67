"""The KV cache's block pool and prefix cache, driven directly (no model)."""

import pytest

from engine.kv_cache import BlockPool, KVCacheManager
from engine.sampling_params import SamplingParams
from engine.sequence import Sequence

BS = 4


def seq(seq_id: int, tokens: list[int]) -> Sequence:
    return Sequence(seq_id, list(tokens), SamplingParams(max_tokens=1))


def admit(kv: KVCacheManager, s: Sequence) -> int:
    """Admits the whole sequence as the scheduler does; returns the prefix-cache hit tokens."""
    hits = kv.computed_blocks(s)
    assert kv.allocate(s, s.num_tokens - len(hits) * BS, hits)
    return len(hits) * BS


def test_it_hands_out_distinct_blocks_and_takes_them_back():
    kv = KVCacheManager(8, BS, enable_prefix_caching=False)
    a, b = seq(0, range(10)), seq(1, range(100, 105))
    assert kv.allocate(a, 10) and kv.allocate(b, 5)
    assert len(a.block_table) == 3 and len(b.block_table) == 2
    assert not set(a.block_table) & set(b.block_table)
    assert kv.num_free_blocks == 3
    kv.free(a)
    kv.free(b)
    assert kv.num_free_blocks == 8 and a.block_table == []


def test_it_refuses_an_allocation_that_does_not_fit_and_changes_nothing():
    kv = KVCacheManager(3, BS, enable_prefix_caching=True)
    a = seq(0, range(13))  # 4 blocks
    assert not kv.allocate(a, 13)
    assert kv.num_free_blocks == 3 and a.block_table == [] and a.num_computed_tokens == 0


def test_it_grows_a_sequence_one_block_at_a_time():
    kv = KVCacheManager(8, BS, enable_prefix_caching=False)
    a = seq(0, range(4))
    assert kv.allocate(a, 4)
    a.num_computed_tokens = 4
    a.token_ids.append(7)  # a decode step: the 5th token needs a second block
    assert kv.allocate(a, 1)
    assert len(a.block_table) == 2 and kv.num_free_blocks == 6
    a.num_computed_tokens = 5
    a.token_ids.append(8)
    assert kv.allocate(a, 1)
    assert len(a.block_table) == 2


def test_it_shares_full_blocks_of_a_common_prefix_and_counts_references():
    kv = KVCacheManager(16, BS, enable_prefix_caching=True)
    a = seq(0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    b = seq(1, [1, 2, 3, 4, 5, 6, 7, 8, 42, 43, 44])
    assert admit(kv, a) == 0
    assert admit(kv, b) == 8  # two full blocks in common
    assert a.block_table[:2] == b.block_table[:2] and a.block_table[2] != b.block_table[2]
    shared = [kv.pool.blocks[i] for i in a.block_table[:2]]
    assert [blk.ref_cnt for blk in shared] == [2, 2]
    assert b.num_computed_tokens == 8
    kv.free(a)
    assert [blk.ref_cnt for blk in shared] == [1, 1]
    kv.free(b)
    assert [blk.ref_cnt for blk in shared] == [0, 0]


def test_it_never_serves_the_last_token_from_the_cache():
    kv = KVCacheManager(16, BS, enable_prefix_caching=True)
    a = seq(0, range(8))
    admit(kv, a)
    twin = seq(1, range(8))
    # both blocks are cached, but the last token must be computed to give logits
    assert admit(kv, twin) == 4


def test_it_chains_hashes_so_a_block_only_matches_after_the_same_prefix():
    kv = KVCacheManager(16, BS, enable_prefix_caching=True)
    admit(kv, seq(0, [1, 2, 3, 4, 5, 6, 7, 8, 9]))
    # same second block, different first block: no hit at all
    assert admit(kv, seq(1, [0, 0, 0, 0, 5, 6, 7, 8, 9])) == 0


def test_it_keeps_freed_blocks_findable_until_they_are_reused():
    kv = KVCacheManager(4, BS, enable_prefix_caching=True)
    a = seq(0, range(9))  # 3 blocks, 2 of them full
    admit(kv, a)
    kv.free(a)
    assert kv.num_free_blocks == 4
    again = seq(1, range(9))
    assert admit(kv, again) == 8  # lazily evicted: still there
    kv.free(again)
    # a stranger takes every block, which finally evicts the cached prefix
    stranger = seq(2, range(100, 116))
    admit(kv, stranger)
    kv.free(stranger)
    assert admit(kv, seq(3, range(9))) == 0


def test_it_evicts_least_recently_freed_first_and_tail_blocks_before_heads():
    kv = KVCacheManager(6, BS, enable_prefix_caching=True)
    old, new = seq(0, range(8)), seq(1, range(50, 58))  # two full blocks each
    admit(kv, old)
    admit(kv, new)
    o0, o1 = old.block_table
    n0, n1 = new.block_table
    kv.free(old)
    kv.free(new)
    never_used = [b for b in range(6) if b not in (o0, o1, n0, n1)]
    assert [b.block_id for b in kv.pool.free] == [*never_used, o1, o0, n1, n0]
    # three new blocks: the two never hashed, then the oldest request's tail block
    taker = seq(2, range(200, 212))
    assert kv.allocate(taker, 12)
    assert sorted(taker.block_table) == sorted([*never_used, o1])
    assert old.block_hashes[1] not in kv.pool.cached
    assert kv.pool.cached[old.block_hashes[0]].block_id == o0
    assert {kv.pool.cached[h].block_id for h in new.block_hashes} == {n0, n1}


def test_it_refuses_to_free_a_block_twice():
    pool = BlockPool(2)
    [block] = pool.get_new_blocks(1)
    pool.free_blocks([block])
    with pytest.raises(RuntimeError, match="freed more often"):
        pool.free_blocks([block])
    assert block.ref_cnt == 0


def test_it_counts_a_cache_hit_on_a_free_block_against_the_free_pool():
    kv = KVCacheManager(3, BS, enable_prefix_caching=True)
    a = seq(0, range(9))  # 3 blocks, all of the pool
    admit(kv, a)
    kv.free(a)
    # 2 hits (both free) + 1 new block for the 9th token = exactly the 3 free blocks
    b = seq(1, range(9))
    assert admit(kv, b) == 8
    assert kv.num_free_blocks == 0
    c = seq(2, range(9))
    assert not kv.allocate(c, 1, kv.computed_blocks(c))  # hits are shared, but no block for the rest
    assert [kv.pool.blocks[i].ref_cnt for i in b.block_table] == [1, 1, 1]


def test_it_keeps_reference_counts_exact_under_random_traffic_and_leaks_nothing():
    import random

    rng = random.Random(0)
    kv = KVCacheManager(24, BS, enable_prefix_caching=True)
    prefixes = [[rng.randrange(50) for _ in range(rng.randrange(1, 14))] for _ in range(4)]
    live: list[Sequence] = []
    for step in range(400):
        if live and (rng.random() < 0.45 or kv.num_free_blocks < 4):
            kv.free(live.pop(rng.randrange(len(live))))
        else:
            tokens = rng.choice(prefixes) + [rng.randrange(50) for _ in range(rng.randrange(1, 9))]
            s = seq(step, tokens)
            hits = kv.computed_blocks(s)
            if kv.allocate(s, s.num_tokens - len(hits) * BS, hits):
                live.append(s)
        holders: dict[int, int] = {}
        for s in live:
            for b in s.block_table:
                holders[b] = holders.get(b, 0) + 1
        for block in kv.pool.blocks:
            assert block.ref_cnt == holders.get(block.block_id, 0) >= 0
        assert {b.block_id for b in kv.pool.free} == {b.block_id for b in kv.pool.blocks if b.ref_cnt == 0}
    for s in live:
        kv.free(s)
    assert kv.num_free_blocks == 24 and all(b.ref_cnt == 0 for b in kv.pool.blocks)
