"""Mixture-of-experts parts: the router's choice of experts and the experts' stacked weights."""

import torch
from torch import nn

import kernels
from engine.layers.linear import copy_weight


def select_experts(router_logits: torch.Tensor, top_k: int, renormalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights float32 [T, top_k], expert ids [T, top_k]): the softmax over all experts, its
    top_k, rescaled to sum to 1 when `renormalize`."""
    weights, ids = router_logits.float().softmax(dim=-1).topk(top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


class FusedExperts(nn.Module):
    """`num_experts` gated MLPs, down(silu(gate(x)) * up(x)), stacked into two weights so one
    kernel runs them all: `gate_up` [E, 2I, H] (an expert's gate rows, then its up rows) and
    `down` [E, H, I]. Checkpoints store each expert's projections apart; `load_expert_weight`
    puts one in its place."""

    projections = ("gate_proj", "up_proj", "down_proj")

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_experts, self.intermediate_size = num_experts, intermediate_size
        self.gate_up = nn.Parameter(
            torch.empty(num_experts, 2 * intermediate_size, hidden_size, dtype=dtype), requires_grad=False
        )
        self.down = nn.Parameter(
            torch.empty(num_experts, hidden_size, intermediate_size, dtype=dtype), requires_grad=False
        )

    def load_expert_weight(self, expert: int, projection: str, tensor: torch.Tensor, name: str) -> None:
        if not 0 <= expert < self.num_experts:
            raise ValueError(f"{name}: there is no expert {expert} (the model has {self.num_experts})")
        size = self.intermediate_size
        if projection == "gate_proj":
            dst = self.gate_up[expert, :size]
        elif projection == "up_proj":
            dst = self.gate_up[expert, size:]
        elif projection == "down_proj":
            dst = self.down[expert]
        else:
            raise ValueError(f"{name}: experts have no {projection!r} (only {', '.join(self.projections)})")
        copy_weight(dst, tensor, name)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return kernels.fused_moe(x, self.gate_up, self.down, weights, ids)
