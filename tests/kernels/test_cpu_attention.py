"""The batched CPU paged attention (`kernels.cpu`) equals the per-sequence reference."""

import random

import pytest
import torch

import kernels
from kernels import cpu, reference
from tests.kernels.conftest import DTYPES, assert_close, poisoned_like
from tests.kernels.test_attention import GROUPS, MIXED, WINDOWS, fp8_cache, make_batch


def check(batch) -> None:
    out = cpu.paged_attention(**batch, out=poisoned_like(batch["query"]))
    assert_close(out, reference.paged_attention(**batch))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_heads, kv_heads", GROUPS)
def test_it_matches_the_reference_on_a_mixed_batch(dtype, q_heads, kv_heads):
    check(make_batch(MIXED, q_heads, kv_heads, 64, 16, dtype, "cpu"))


@pytest.mark.parametrize("q_heads, kv_heads", GROUPS)
def test_it_matches_the_reference_on_decodes_of_very_different_lengths(q_heads, kv_heads):
    # contexts from 1 to 1000 tokens fall into several padded batches
    specs = [(ctx, 1) for ctx in (1, 2, 15, 16, 17, 31, 64, 100, 129, 250, 251, 513, 999, 1000)]
    check(make_batch(specs, q_heads, kv_heads, 64, 16, torch.float32, "cpu"))


@pytest.mark.parametrize("q_heads, kv_heads", [(4, 4), (6, 2), (8, 1)])
def test_it_matches_the_reference_when_queries_fill_the_whole_context(q_heads, kv_heads):
    # whole prompts (q_len == ctx) of equal and unequal lengths, next to chunks and decodes
    specs = [(200, 200), (200, 200), (77, 77), (3, 3), (150, 60), (150, 60), (40, 1), (41, 1)]
    check(make_batch(specs, q_heads, kv_heads, 32, 16, torch.float32, "cpu"))


def test_it_matches_the_reference_on_random_batches():
    rng = random.Random(0)
    for _ in range(5):
        specs = []
        for _ in range(rng.randint(1, 24)):
            ctx = rng.randint(1, 300)
            specs.append((ctx, rng.choice([0, 1, 1, 1, rng.randint(1, ctx), ctx])))
        q_heads, kv_heads = rng.choice(GROUPS)
        check(make_batch(specs, q_heads, kv_heads, 64, rng.choice([1, 8, 16]), torch.float32, "cpu"))


@pytest.mark.parametrize("head_dim", [80, 128])
def test_it_handles_head_dims_that_are_not_powers_of_two(head_dim):
    check(make_batch(MIXED, 6, 2, head_dim, 16, torch.bfloat16, "cpu"))


def test_it_matches_the_reference_with_an_odd_block_size():
    check(make_batch(MIXED, 8, 2, 64, 7, torch.float16, "cpu"))


def test_it_never_reads_block_table_entries_past_a_context():
    # batched with longer neighbours, so their tables are read to the neighbours' width
    batch = make_batch([(40, 1), (25, 1), (17, 1), (33, 1), (60, 4), (35, 4)], 6, 2, 64, 16, torch.float32, "cpu")
    tables, ctx = batch["block_tables"], batch["seq_lens"]
    for b in range(len(ctx)):
        tables[b, -(-int(ctx[b]) // 16) :] = -7  # would fail any index_select that read it
    check(batch)


def test_it_writes_into_a_strided_output_view():
    specs = [(17, 1), (40, 5), (9, 9)]
    batch = make_batch(specs, 4, 2, 64, 16, torch.float32, "cpu")
    rows = sum(q for _, q in specs)
    wide = torch.full((rows, 4 * 64 * 2), float("nan"))
    out = wide[:, : 4 * 64].view(rows, 4, 64)
    cpu.paged_attention(**batch, out=out)
    assert_close(out, reference.paged_attention(**batch))
    assert wide[:, 4 * 64 :].isnan().all()


def test_it_is_what_kernels_runs_for_cpu_tensors(monkeypatch):
    calls = []
    real = cpu.paged_attention
    monkeypatch.setattr(cpu, "paged_attention", lambda *a: calls.append(1) or real(*a))
    batch = make_batch(MIXED, 6, 2, 64, 16, torch.float32, "cpu")
    out = kernels.paged_attention(*batch.values())
    assert calls == [1]
    assert_close(out, reference.paged_attention(**batch))


@pytest.mark.parametrize("window, softcap", WINDOWS)
def test_it_matches_the_reference_with_a_window_and_soft_capping(window, softcap):
    specs = [(200, 200), (77, 77), (150, 60), (150, 60), (40, 1), (300, 1), (290, 1), (3, 3)]
    check({**make_batch(specs, 6, 2, 64, 16, torch.float32, "cpu"), "window": window, "softcap": softcap})


@pytest.mark.parametrize("window, softcap", [(None, None), (13, 4.0)])
def test_it_matches_the_reference_with_an_fp8_cache(window, softcap):
    specs = [(200, 200), (150, 60), (40, 1), (300, 1), (290, 1), (3, 3)]
    batch = fp8_cache(make_batch(specs, 6, 2, 64, 16, torch.float32, "cpu"))
    check({**batch, "window": window, "softcap": softcap})


def test_it_plans_each_layout_once_and_sees_a_changed_one():
    batch = make_batch([(40, 1), (25, 1), (60, 4)], 6, 2, 64, 16, torch.float32, "cpu")
    check(batch)
    plans = cpu._last[-1]
    check(batch)  # the next layer, same layout: the same plans
    assert cpu._last[-1] is plans
    # the same lengths with other blocks (a table written in place) is another layout
    tables = batch["block_tables"]
    tables.copy_(tables.flip(0))
    check(batch)
    assert cpu._last[-1] is not plans


def test_it_attends_a_single_decode_over_exactly_its_context():
    for ctx in (1, 15, 16, 17, 100):
        batch = make_batch([(ctx, 1)], 8, 2, 64, 16, torch.float32, "cpu")
        check(batch)
        (plan,) = cpu._last[-1]
        assert plan.width == ctx and plan.visible is None
