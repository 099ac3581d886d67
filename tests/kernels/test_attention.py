import math

import pytest
import torch

from kernels import attention, reference
from tests.kernels.conftest import DTYPES, assert_close, poisoned_like

DECODE = [(1, 1), (15, 1), (16, 1), (17, 1), (100, 1)]
# (context length after this step, new query tokens): prefills, chunks over a cached prefix,
# decodes, a sequence with no tokens this step, lengths on and around block boundaries
MIXED = [(37, 37), (50, 20), (33, 1), (10, 0), (32, 32), (129, 7), (1, 1)]
GROUPS = [(4, 4), (4, 2), (6, 2), (8, 2), (8, 1)]  # query heads per KV head: 1, 2, 3, 4, 8


def make_batch(specs, q_heads, kv_heads, head_dim, block_size, dtype, device):
    """Random queries and cache with each sequence's blocks scattered over the cache."""
    blocks_per_seq = [math.ceil(ctx / block_size) for ctx, _ in specs]
    num_blocks = sum(blocks_per_seq) + 3
    width = max(blocks_per_seq) + 2
    # unused table entries hold valid but wrong block ids, so reading past a context shows
    block_tables = torch.randint(0, num_blocks, (len(specs), width), dtype=torch.int32)
    order = torch.randperm(num_blocks).to(torch.int32)
    used = 0
    for b, n in enumerate(blocks_per_seq):
        block_tables[b, :n] = order[used : used + n]
        used += n
    q_lens = [q for _, q in specs]
    num_tokens = sum(q_lens)
    return dict(
        query=torch.randn(num_tokens, q_heads, head_dim).to(dtype).to(device),
        k_cache=torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype).to(device),
        v_cache=torch.randn(num_blocks, block_size, kv_heads, head_dim).to(dtype).to(device),
        block_tables=block_tables.to(device),
        seq_lens=torch.tensor([ctx for ctx, _ in specs], dtype=torch.int32, device=device),
        query_start_loc=torch.tensor([0] + q_lens, dtype=torch.int32).cumsum(0).to(torch.int32).to(device),
        scale=head_dim**-0.5,
    )


def check(batch, **launch):
    out = attention.paged_attention(**batch, out=poisoned_like(batch["query"]), **launch)
    assert_close(out, reference.paged_attention(**batch))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_heads, kv_heads", GROUPS)
def test_it_matches_the_reference_on_a_mixed_batch(device, dtype, q_heads, kv_heads):
    check(make_batch(MIXED, q_heads, kv_heads, 64, 16, dtype, device))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_heads, kv_heads", [(4, 4), (6, 2), (8, 1)])
@pytest.mark.parametrize("num_segments", [2, 8])
def test_it_matches_the_reference_with_split_k(device, dtype, q_heads, kv_heads, num_segments):
    # segments down to one tile, so these short contexts really split
    batch = make_batch(DECODE + [(45, 3)], q_heads, kv_heads, 64, 16, dtype, device)
    check(batch, num_segments=num_segments, min_segment_keys=1)


@pytest.mark.parametrize("head_dim", [80, 128])
def test_it_handles_head_dims_that_are_not_powers_of_two(device, head_dim):
    check(make_batch(MIXED, 6, 2, head_dim, 16, torch.bfloat16, device))


def test_it_matches_the_reference_with_an_odd_block_size(device):
    check(make_batch(MIXED, 8, 2, 64, 7, torch.float16, device))


@pytest.mark.parametrize("q_heads, kv_heads", [(4, 4), (6, 2), (8, 1)])
@pytest.mark.parametrize("num_segments", [1, 4])
def test_it_matches_the_reference_with_gpu_sized_tiles(device, q_heads, kv_heads, num_segments):
    # 16-row Q-blocks and 16-key tiles: several Q-blocks per prefill and many KV tiles per
    # sequence, which the interpreter's big default tiles skip; with the default segment
    # length most split-K segments are empty
    batch = make_batch(MIXED, q_heads, kv_heads, 64, 16, torch.float32, device)
    check(batch, block_m=16, tile_n=16, num_segments=num_segments)


def test_it_writes_into_a_strided_output_view(device):
    batch = make_batch(DECODE, 4, 2, 64, 16, torch.float32, device)
    wide = torch.full((len(DECODE), 4 * 64 * 2), float("nan"), device=device)
    out = wide[:, : 4 * 64].view(len(DECODE), 4, 64)
    attention.paged_attention(**batch, out=out)
    assert_close(out, reference.paged_attention(**batch))
    assert wide[:, 4 * 64 :].isnan().all()


def test_it_refuses_heads_that_do_not_group(device):
    batch = make_batch(DECODE, 6, 4, 64, 16, torch.float32, device)
    with pytest.raises(ValueError, match="do not group"):
        attention.paged_attention(**batch)


# (window, softcap): windows of one key, shorter and longer than a block, and soft-capping alone
WINDOWS = [(1, None), (13, 4.0), (40, None), (None, 2.5)]


@pytest.mark.parametrize(
    "dtype, window, softcap",
    [(torch.float32, *w) for w in WINDOWS] + [(torch.float16, 13, 4.0), (torch.bfloat16, 13, 4.0)],
)
def test_it_matches_the_reference_with_a_window_and_soft_capping(device, dtype, window, softcap):
    check({**make_batch(MIXED, 6, 2, 64, 16, dtype, device), "window": window, "softcap": softcap})


@pytest.mark.parametrize("num_segments", [1, 4])
def test_it_matches_the_reference_with_a_window_over_many_tiles(device, num_segments):
    # 16-key tiles and Q-blocks of 8 tokens: the window starts inside a tile, the Q-blocks of
    # one prefill start at different tiles, and split-K divides only the tiles in the window
    batch = make_batch([(37, 37), (50, 20), (129, 7), (150, 1)], 4, 2, 64, 16, torch.float32, device)
    check({**batch, "window": 13, "softcap": 4.0}, block_m=16, tile_n=16, num_segments=num_segments, min_segment_keys=1)


@pytest.mark.parametrize("num_segments", [1, 2])
def test_it_reads_no_block_before_the_window(device, num_segments):
    window, block = 20, 16
    specs = [(200, 1), (97, 1), (150, 30), (21, 21)]
    batch = make_batch(specs, 4, 2, 64, block, torch.float32, device)
    expected = reference.paged_attention(**batch, window=window)
    # the blocks that end before every query's window begins now hold NaN, which any read spreads
    for b, (ctx, q_len) in enumerate(specs):
        first_key = ctx - q_len - window + 1
        for i in range(max(first_key, 0) // block):
            block_id = int(batch["block_tables"][b, i])
            batch["k_cache"][block_id] = float("nan")
            batch["v_cache"][block_id] = float("nan")
    launch = dict(block_m=64, tile_n=block, num_segments=num_segments, min_segment_keys=1)
    out = attention.paged_attention(**batch, window=window, **launch)
    assert_close(out, expected)


def fp8_cache(batch: dict, k_scale: float = 0.02, v_scale: float = 0.01) -> dict:
    """The batch with its K/V quantized into an FP8 cache, K scaled to use the codes' range."""
    k = reference.quantize_kv(batch["k_cache"].float() * 3, k_scale)
    v = reference.quantize_kv(batch["v_cache"].float(), v_scale)
    return {**batch, "k_cache": k, "v_cache": v, "k_scale": k_scale, "v_scale": v_scale}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("q_heads, kv_heads", [(4, 4), (6, 2), (8, 1)])
@pytest.mark.parametrize("window, softcap", [(None, None), (13, 4.0)])
def test_it_matches_the_reference_with_an_fp8_cache(device, dtype, q_heads, kv_heads, window, softcap):
    batch = fp8_cache(make_batch(MIXED, q_heads, kv_heads, 64, 16, dtype, device))
    check({**batch, "window": window, "softcap": softcap})


@pytest.mark.parametrize("num_segments", [1, 4])
def test_it_matches_the_reference_with_an_fp8_cache_over_many_tiles(device, num_segments):
    # the scales apply once per program and once per split-K segment, never per tile
    batch = fp8_cache(make_batch(DECODE + [(45, 3)], 6, 2, 64, 16, torch.float32, device))
    check(batch, block_m=16, tile_n=16, num_segments=num_segments, min_segment_keys=1)
