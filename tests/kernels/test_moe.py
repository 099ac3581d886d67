"""The fused MoE kernel equals its twin, and its grouping of (token, choice) pairs by expert
gives every block one expert and every pair one place."""

import pytest
import torch

from kernels import moe, reference
from tests.kernels.conftest import DTYPES, assert_close


def routing(tokens: int, num_experts: int, top_k: int, device: str, unused: tuple[int, ...] = ()):
    """A router's output: float32 weights and distinct expert ids [tokens, top_k]."""
    logits = torch.randn(tokens, num_experts, device=device)
    logits[:, list(unused)] = float("-inf")
    return logits.softmax(dim=-1).topk(top_k, dim=-1)


def experts(num_experts: int, hidden: int, inter: int, dtype: torch.dtype, device: str):
    gate_up = torch.randn(num_experts, 2 * inter, hidden, device=device) / hidden**0.5
    down = torch.randn(num_experts, hidden, inter, device=device) / inter**0.5
    return gate_up.to(dtype), down.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "tokens, hidden, inter, num_experts, top_k, unused",
    [
        (1, 64, 32, 8, 2, ()),  # a decode step: fewer pairs than experts
        (37, 72, 40, 8, 2, ()),  # widths that leave partial tiles
        (20, 64, 48, 16, 4, (0, 5, 15)),  # experts no token chose
    ],
)
def test_it_matches_the_reference_fused_moe(device, dtype, tokens, hidden, inter, num_experts, top_k, unused):
    x = torch.randn(tokens, hidden, device=device).to(dtype)
    gate_up, down = experts(num_experts, hidden, inter, dtype, device)
    weights, ids = routing(tokens, num_experts, top_k, device, unused)
    assert_close(moe.fused_moe(x, gate_up, down, weights, ids), reference.fused_moe(x, gate_up, down, weights, ids))


def test_it_matches_the_reference_with_small_tiles_in_bands(device):
    # many row blocks and column tiles, walked in bands of GROUP_M as the GPU's large batches are
    cfg = moe.Config(block_m=16, block_n=16, block_k=16, group_m=4, num_warps=4, num_stages=1)
    x = torch.randn(40, 72, device=device)
    gate_up, down = experts(8, 72, 40, torch.float32, device)
    weights, ids = routing(40, 8, 2, device)
    out = moe.fused_moe(x, gate_up, down, weights, ids, config=cfg)
    assert_close(out, reference.fused_moe(x, gate_up, down, weights, ids))


@pytest.mark.parametrize(
    "tokens, num_experts, top_k, block_m", [(1, 8, 2, 16), (45, 8, 2, 16), (33, 16, 4, 8), (64, 4, 1, 16)]
)
def test_it_groups_the_pairs_by_expert_in_whole_blocks(device, tokens, num_experts, top_k, block_m):
    _, ids = routing(tokens, num_experts, top_k, device, unused=(1,))
    sorted_ids, block_experts, num_padded = moe.align_by_expert(ids, num_experts, block_m)
    pairs, used = tokens * top_k, int(num_padded)
    counts = torch.bincount(ids.flatten().cpu(), minlength=num_experts)
    assert used == int(((counts + block_m - 1) // block_m * block_m).sum()) <= sorted_ids.numel()
    real = sorted_ids[:used][sorted_ids[:used] < pairs].cpu()
    assert sorted(real.tolist()) == list(range(pairs)), "every pair has exactly one place"
    assert (sorted_ids[used:] == pairs).all()
    # each block in use holds at least one pair, all of its own expert
    flat = ids.flatten().cpu()
    for block, expert in enumerate(block_experts[: used // block_m].tolist()):
        members = sorted_ids[block * block_m : (block + 1) * block_m].cpu()
        members = members[members < pairs]
        assert len(members) and (flat[members] == expert).all()
