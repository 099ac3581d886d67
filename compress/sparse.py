"""Pruning: SparseGPT (Frantar & Alistarh, 2023, arXiv:2301.00774) and magnitude pruning.

N:M here follows llm-compressor's `mask_structure` "N:M": N weights pruned in every M
consecutive weights along the input dimension ("2:4" = 2 zeros in each group of 4). SparseGPT
chooses each group's zeros by w^2 / [H^-1]_jj^2 at the moment the group is reached and updates
the remaining columns to compensate, like GPTQ does for rounding error.
"""

import torch

from common.threads import one_cpu_thread
from compress.gptq import hessian_inverse_factor


def parse_mask_structure(mask_structure: str) -> tuple[int, int]:
    """'2:4' -> (2, 4); '0:0' (unstructured) -> (0, 0)."""
    try:
        n, m = (int(v) for v in str(mask_structure).split(":"))
    except ValueError:
        raise ValueError(f"mask_structure must look like '2:4' (N pruned in every M), got {mask_structure!r}") from None
    if (n, m) != (0, 0) and not 0 < n < m:
        raise ValueError(f"mask_structure {mask_structure!r}: need 0 < N < M (or '0:0' for unstructured)")
    return n, m


def sparsegpt_prune(
    w: torch.Tensor,
    h: torch.Tensor,
    *,
    sparsity: float,
    n: int,
    m: int,
    block_size: int = 128,
    dampening_frac: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prune float32 weight [rows, cols]. N:M when m > 0, else unstructured at `sparsity` (chosen
    per block of columns). Returns (pruned weight, mask of pruned entries, loss per row)."""
    w = w.float().clone()
    h = h.float()
    rows, cols = w.shape
    if m and block_size % m:
        raise ValueError(f"SparseGPT block_size {block_size} must be a multiple of M={m}")
    w[:, torch.diag(h) == 0] = 0
    hinv = hessian_inverse_factor(h, dampening_frac)
    # columns are worked on as contiguous rows of the transposed matrices
    wt = w.t().contiguous()
    mask = torch.zeros_like(wt, dtype=torch.bool)
    loss = torch.zeros(rows, device=w.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = wt[i1:i2].clone()
        err1 = torch.empty_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        diag = torch.diag(hinv1)
        if m:
            mask1 = torch.zeros_like(w1, dtype=torch.bool)
        else:
            score = w1.square() / diag.square().unsqueeze(1)
            k = int(score.numel() * sparsity)
            mask1 = score <= torch.kthvalue(score.flatten(), k).values if k else torch.zeros_like(w1, dtype=torch.bool)
        with one_cpu_thread(w.device.type == "cpu"):
            for i in range(i2 - i1):
                if m and i % m == 0:
                    score = w1[i : i + m].square() / diag[i : i + m].square().unsqueeze(1)
                    mask1.scatter_(0, i + torch.topk(score, n, dim=0, largest=False).indices, True)
                col = w1[i]
                kept = col.masked_fill(mask1[i], 0)
                e = (col - kept) / hinv1[i, i]
                loss += e * e / 2
                w1[i:] -= hinv1[i, i:].unsqueeze(1) * e.unsqueeze(0)
                w1[i] = kept
                err1[i] = e
        wt[i1:i2] = w1
        mask[i1:i2] = mask1
        wt[i2:] -= hinv[i1:i2, i2:].t() @ err1
    w, mask = wt.t().contiguous(), mask.t().contiguous()
    # the in-block updates may have touched entries pruned earlier in the block
    w.masked_fill_(mask, 0)
    return w, mask, loss


def magnitude_prune(w: torch.Tensor, *, sparsity: float, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the N smallest |w| in every M consecutive inputs, or (m == 0) the `sparsity`
    fraction of smallest |w| in the whole matrix. Returns (pruned weight, mask of pruned)."""
    w = w.float()
    a = w.abs()
    if m:
        groups = a.unflatten(1, (a.shape[1] // m, m))
        idx = torch.topk(groups, n, dim=-1, largest=False).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True).flatten(1)
    else:
        k = int(a.numel() * sparsity)
        mask = a <= torch.kthvalue(a.flatten(), k).values if k else torch.zeros_like(w, dtype=torch.bool)
    return w.masked_fill(mask, 0), mask
