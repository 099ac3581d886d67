"""GPTQ (Frantar et al., 2022, arXiv:2210.17323): quantize a weight column by column, spreading
each column's rounding error over the columns not yet quantized, weighted by the inverse
Hessian of the layer's reconstruction loss, H = 2/n * X^T X over the calibration inputs.

Rows are independent given H, so Linears that share an input (q/k/v, gate/up) are stacked and
solved together. Scales are fixed up front from the weight (min/max per group or channel);
with static activation order ("static" / "weight") the columns are visited in order of
decreasing H diagonal, each still using the scale of its own contiguous group, so nothing but
ordinary groups reaches the checkpoint (no `weight_g_idx`).
"""

import torch
from compressed_tensors.quantization import QuantizationArgs

from common.threads import one_cpu_thread
from compress.quant import QuantizedWeight, codes, compute_qparams, expand_qparams, quantize_values


def hessian_inverse_factor(h: torch.Tensor, dampening_frac: float, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, with H's rows and columns
    permuted by `perm` when given. Dead input columns (never active in the calibration data) get
    a unit diagonal; the dampening grows tenfold until H is positive definite. Each matrix of
    H's size is freed as soon as it is used: for the widest Linear (down_proj, intermediate x
    intermediate) they are the biggest transient of its layer."""
    diag = torch.diag(h) if perm is None else torch.diag(h)[perm]
    diag[diag == 0] = 1
    mean_diag = torch.mean(diag)
    damp = dampening_frac
    for _ in range(6):
        damped = h.clone() if perm is None else h[perm.unsqueeze(1), perm]
        # adding damp * mean * I, the off-diagonal zeros left out
        damped.diagonal().copy_(diag).add_(damp * mean_diag)
        lower, info = torch.linalg.cholesky_ex(damped)
        del damped
        if info.item() == 0:
            # cholesky_solve rather than cholesky_inverse: the latter is ~8x slower on the CPU at 1536
            inverse = torch.cholesky_solve(torch.eye(h.shape[0], device=h.device), lower)
            del lower
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if info.item() == 0:
                return upper
        damp *= 10
    raise RuntimeError(
        f"Hessian is not positive definite even with dampening {damp / 10:g} (degenerate calibration data?)"
    )


def gptq_quantize(
    w: torch.Tensor,
    h: torch.Tensor,
    args: QuantizationArgs,
    scale_dtype: torch.dtype,
    *,
    block_size: int = 128,
    dampening_frac: float = 0.01,
    actorder: bool = True,
    keep_zero: torch.Tensor | None = None,
) -> tuple[QuantizedWeight, torch.Tensor]:
    """Quantize float32 weight [rows, cols] given the Hessian [cols, cols]. `keep_zero` marks
    pruned weights that must stay exactly zero (2:4 followed by quantization). Returns the
    result and the GPTQ loss per row, sum_j (w - q)^2 / d_j^2 / 2."""
    h = h.float()
    rows, cols = w.shape
    perm = torch.argsort(torch.diag(h), descending=True) if actorder else None
    # memory is the limit on big layers: the inverse, the biggest transient, comes before the
    # weight's working copies, and each copy below is freed as soon as it is replaced
    hinv = hessian_inverse_factor(h, dampening_frac, perm)
    w = w.float().masked_fill(torch.diag(h) == 0, 0)
    scale, zp = compute_qparams(w, args, scale_dtype)
    # columns are worked on as contiguous rows of transposed matrices ("t" below)
    wt = w.t().contiguous()
    st = expand_qparams(scale, args, w.shape).t().contiguous()
    zt = expand_qparams(zp, args, w.shape).t().contiguous() if zp is not None else None
    keep_t = keep_zero.t().contiguous() if keep_zero is not None else None
    del w
    if perm is not None:
        wt, st = wt[perm], st[perm]
        zt = zt[perm] if zt is not None else None
        keep_t = keep_t[perm] if keep_t is not None else None

    q_t = torch.empty_like(wt)
    loss = torch.zeros(rows, device=wt.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = wt[i1:i2].clone()
        err1 = torch.empty_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        with one_cpu_thread(wt.device.type == "cpu"):
            for i in range(i2 - i1):
                j = i1 + i
                col = w1[i]
                q, dq = quantize_values(col, st[j], zt[j] if zt is not None else None, args)
                if keep_t is not None:
                    # a pruned weight takes the zero point's code, so (q - z) * s is exactly 0
                    q = torch.where(keep_t[j], zt[j] if zt is not None else 0.0, q)
                    dq = dq.masked_fill(keep_t[j], 0)
                q_t[j] = q
                e = err1[i]
                torch.sub(col, dq, out=e)
                e.div_(hinv1[i, i])
                w1[i:].sub_(hinv1[i, i:].unsqueeze(1) * e)
        loss += err1.square().sum(dim=0) / 2
        wt[i2:] -= hinv[i1:i2, i2:].t() @ err1

    del wt, hinv
    # the same arithmetic as quantize_values, for all columns at once
    deq_t = (q_t - zt) * st if zt is not None else q_t * st
    del st, zt
    if perm is not None:
        inv = torch.argsort(perm)
        q_t = q_t[inv]
        deq_t = deq_t[inv]
    q_out = codes(q_t.t(), args)
    del q_t
    return QuantizedWeight(q_out, scale, zp, deq_t.t().contiguous()), loss
