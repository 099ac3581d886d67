"""Paged attention for CPU tensors, batched (twin: `kernels.reference.paged_attention`).

The reference attends one sequence at a time, which on a CPU costs a fixed ~0.2 ms per
sequence per layer, most of it op overhead: a decode step of 64 sequences pays it 64 times per
layer. Here sequences with the same number of new tokens and similar context lengths form one
padded batch: their blocks are gathered with one `index_select` into `[B, L, Hkv, D]`, and one
masked `scaled_dot_product_attention` serves the whole batch. The query heads of a group are
folded into the query-length dimension, so each KV head is attended by `group * q_len` rows
without repeating K/V. An FP8 cache is gathered as it is (a quarter of float32's bytes) and
dequantized after the gather.

Everything that depends only on the step's layout (batches, gather indices, query rows, masks)
is a `_Plan` computed once per step and reused by every layer: the layers of a model attend over
the same sequences, and each of these ops costs a fixed few microseconds. A single sequence
decoding one token attends over exactly its context, with no mask.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.reference import dequantize_kv

# a sequence joins a batch while its context is at least this fraction of the batch's longest,
# so padding at most doubles the keys attended
_MIN_FILL = 0.5


@dataclass(frozen=True)
class _Plan:
    """One padded batch of sequences: where its keys and queries are, and what each query sees."""

    n: int
    q_len: int
    width: int  # keys per sequence after the gather
    ids: torch.Tensor  # cache blocks to gather, [n * blocks]
    rows: torch.Tensor  # query rows, [n * q_len]
    q_pos: torch.Tensor  # [n, q_len]
    visible: torch.Tensor | None  # [n, q_len, width] causal and length mask; None: every key


# the last layout seen and its plans: the next layer's call, with the same layout, reuses them
_last: tuple[list[int], list[int], int, torch.Tensor, list[_Plan]] | None = None


def _step_plans(
    block_tables: torch.Tensor, seq_lens: torch.Tensor, query_start_loc: torch.Tensor, block_size: int
) -> list[_Plan]:
    global _last
    starts, ctx_lens = query_start_loc.tolist(), seq_lens.tolist()
    if _last is not None and _last[:3] == (starts, ctx_lens, block_size) and torch.equal(_last[3], block_tables):
        return _last[4]
    plans = [_plan(block_tables, seqs, starts, ctx_lens, block_size) for seqs in _batches(starts, ctx_lens)]
    _last = (starts, ctx_lens, block_size, block_tables.clone(), plans)
    return plans


def _plan(
    block_tables: torch.Tensor, seqs: list[int], starts: list[int], ctx_lens: list[int], block_size: int
) -> _Plan:
    n = len(seqs)
    q_len = starts[seqs[0] + 1] - starts[seqs[0]]
    ctx = torch.tensor([ctx_lens[b] for b in seqs])
    max_ctx = int(ctx.max())
    num_blocks = -(-max_ctx // block_size)
    # table entries past a sequence's own blocks may hold anything: read block 0 there (masked)
    tables = block_tables.index_select(0, torch.tensor(seqs))[:, :num_blocks].long()
    own = torch.arange(num_blocks)[None, :] * block_size < ctx[:, None]
    ids = torch.where(own, tables, 0).flatten()
    rows = (torch.tensor([starts[b] for b in seqs])[:, None] + torch.arange(q_len)).flatten()
    # query row t of a sequence sits at position ctx - q_len + t and sees keys up to there
    q_pos = ctx[:, None] - q_len + torch.arange(q_len)  # [n, q_len]
    if n == 1 and q_len == 1:
        return _Plan(n, q_len, max_ctx, ids, rows, q_pos, None)
    width = num_blocks * block_size
    visible = torch.arange(width)[None, None, :] <= q_pos[:, :, None]  # [n, q_len, width]
    return _Plan(n, q_len, width, ids, rows, q_pos, visible)


def paged_attention(
    query: torch.Tensor,  # [T, Hq, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks] int32
    seq_lens: torch.Tensor,  # [B] int32
    query_start_loc: torch.Tensor,  # [B + 1] int32
    scale: float,
    out: torch.Tensor | None = None,  # [T, Hq, D]
    *,
    window: int | None = None,
    softcap: float | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    if out is None:
        out = torch.empty_like(query)
    for plan in _step_plans(block_tables, seq_lens, query_start_loc, k_cache.shape[1]):
        _attend(query, k_cache, v_cache, plan, scale, out, window, softcap, (k_scale, v_scale))
    return out


def _batches(starts: list[int], ctx_lens: list[int]) -> list[list[int]]:
    """Sequences grouped by query length, then by context length within _MIN_FILL."""
    by_q_len: dict[int, list[int]] = {}
    for b, ctx in enumerate(ctx_lens):
        q_len = starts[b + 1] - starts[b]
        if q_len:
            by_q_len.setdefault(q_len, []).append(b)
    batches = []
    for seqs in by_q_len.values():
        seqs.sort(key=lambda b: -ctx_lens[b])
        batch = [seqs[0]]
        for b in seqs[1:]:
            if ctx_lens[b] < _MIN_FILL * ctx_lens[batch[0]]:
                batches.append(batch)
                batch = []
            batch.append(b)
        batches.append(batch)
    return batches


def _attend(
    query: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    plan: _Plan,
    scale: float,
    out: torch.Tensor,
    window: int | None,
    softcap: float | None,
    kv_scales: tuple[float, float],
) -> None:
    num_q_heads, head_dim = query.shape[1], query.shape[2]
    num_kv_heads = k_cache.shape[2]
    group = num_q_heads // num_kv_heads
    n, q_len, width = plan.n, plan.q_len, plan.width

    def gather(cache: torch.Tensor, kv_scale: float) -> torch.Tensor:  # [n, Hkv, width, D]
        keys = dequantize_kv(cache.index_select(0, plan.ids), kv_scale).view(n, -1, num_kv_heads, head_dim)
        return keys[:, :width].transpose(1, 2)

    k, v = gather(k_cache, kv_scales[0]), gather(v_cache, kv_scales[1])
    # [n, q_len, Hkv, group, D] -> [n, Hkv, group * q_len, D]
    q = query.index_select(0, plan.rows).view(n, q_len, num_kv_heads, group, head_dim)
    q = q.permute(0, 2, 3, 1, 4).reshape(n, num_kv_heads, group * q_len, head_dim).float()

    visible = plan.visible
    if window is not None:
        k_pos = torch.arange(width)[None, None, :]
        in_window = k_pos > plan.q_pos[:, :, None] - window
        visible = in_window if visible is None else visible & in_window
    mask = None
    if visible is not None:
        mask = visible[:, None].expand(n, group, q_len, width).reshape(n, 1, group * q_len, width)

    if softcap is None:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    else:  # scaled_dot_product_attention has no soft-capping
        scores = torch.tanh(q @ k.transpose(-1, -2) * scale / softcap) * softcap
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        o = scores.softmax(dim=-1) @ v
    # [n, Hkv, group, q_len, D] -> [n * q_len, Hq, D]
    o = o.view(n, num_kv_heads, group, q_len, head_dim).permute(0, 3, 1, 2, 4).reshape(n * q_len, num_q_heads, head_dim)
    out.index_copy_(0, plan.rows, o.to(out.dtype))
