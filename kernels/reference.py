"""PyTorch reference twins of the Triton kernels.

These are the contract: each Triton kernel in `kernels/` takes the same arguments and must
match its twin here within dtype tolerance. On a machine without CUDA the engine runs on
these functions directly, so they are also the CPU execution path (except paged attention,
whose batched CPU path `kernels.cpu` is held to the twin here).

Layout conventions shared by the engine and the kernels:
- tokens of all sequences in a step are packed along dim 0 (`T` = total scheduled tokens);
- KV cache per layer: `k_cache`, `v_cache` of shape `[num_blocks, block_size, num_kv_heads, head_dim]`;
- `slot_mapping[t] = block_id * block_size + offset` for token t, `-1` means "do not store"
  (padding in CUDA-graph batches);
- `block_tables[b, i]` is the i-th block of sequence b (int32, padded with any value past the end);
- `seq_lens[b]` is the number of tokens of sequence b in the cache *after* this step's store;
- `query_start_loc[b] : query_start_loc[b+1]` are sequence b's query rows (its last `q_len` tokens);
- an FP8 cache (`torch.float8_e4m3fn`) holds K / k_scale and V / v_scale, clamped to +-448: one
  float32 scale per tensor (per layer), which the attention multiplies back in float32. A cache
  of any other dtype holds K and V as they are and ignores the scales.
"""

import torch

FP8_MAX = 448.0


def quantize_kv(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x / scale in float32, clamped to the FP8 range, rounded to float8_e4m3fn."""
    # a tensor divisor: CUDA turns division by a Python number into multiplication by its reciprocal
    divisor = torch.tensor(scale, dtype=torch.float32, device=x.device)
    return (x.float() / divisor).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


def dequantize_kv(cache: torch.Tensor, scale: float) -> torch.Tensor:
    """The float32 values a cache (or a gather of its blocks) holds."""
    if cache.dtype == torch.float8_e4m3fn:
        return cache.float().mul_(scale)  # a fresh tensor: the float copy of the codes
    return cache.float()


def store_kvcache(
    key: torch.Tensor,  # [T, Hkv, D]
    value: torch.Tensor,  # [T, Hkv, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,  # [T] int
    *,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> None:
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    if k_cache.dtype == torch.float8_e4m3fn:
        key, value = quantize_kv(key[keep], k_scale), quantize_kv(value[keep], v_scale)
    else:
        key, value = key[keep].to(k_cache.dtype), value[keep].to(v_cache.dtype)
    k_cache.view(-1, *k_cache.shape[2:])[slots] = key
    v_cache.view(-1, *v_cache.shape[2:])[slots] = value


def paged_attention(
    query: torch.Tensor,  # [T, Hq, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks] int32
    seq_lens: torch.Tensor,  # [B] int32, context length including this step's tokens
    query_start_loc: torch.Tensor,  # [B + 1] int32
    scale: float,
    out: torch.Tensor | None = None,  # [T, Hq, D]
    *,
    window: int | None = None,
    softcap: float | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    """Causal attention of each sequence's new tokens over its whole cached context.

    One function covers decode (q_len 1), prefill and prefill chunks over a cached prefix:
    query row i of sequence b sits at position `seq_lens[b] - q_len + i` and sees positions
    up to and including its own, and with a `window` only the last `window` of them (its own
    included: position p sees p - window + 1 .. p). With `softcap` the scaled scores become
    `softcap * tanh(score / softcap)` before the mask and softmax (Gemma 2). An FP8 cache is
    read as its codes times `k_scale` / `v_scale`.
    """
    num_q_heads, head_dim = query.shape[1], query.shape[2]
    block_size, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = num_q_heads // num_kv_heads
    if out is None:
        out = torch.empty_like(query)
    starts = query_start_loc.tolist()
    lens = seq_lens.tolist()
    for b, ctx_len in enumerate(lens):
        q0, q1 = starts[b], starts[b + 1]
        q_len = q1 - q0
        if q_len == 0:
            continue
        n_blocks = (ctx_len + block_size - 1) // block_size
        blocks = block_tables[b, :n_blocks].long()
        k = dequantize_kv(k_cache.index_select(0, blocks).reshape(-1, num_kv_heads, head_dim)[:ctx_len], k_scale)
        v = dequantize_kv(v_cache.index_select(0, blocks).reshape(-1, num_kv_heads, head_dim)[:ctx_len], v_scale)
        k = k.repeat_interleave(group, dim=1)  # [L, Hq, D]
        v = v.repeat_interleave(group, dim=1)
        q = query[q0:q1].float()  # [q_len, Hq, D]
        scores = torch.einsum("qhd,khd->hqk", q, k) * scale
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        q_pos = torch.arange(ctx_len - q_len, ctx_len, device=query.device)
        k_pos = torch.arange(ctx_len, device=query.device)
        hidden = k_pos[None, :] > q_pos[:, None]
        if window is not None:
            hidden |= k_pos[None, :] <= q_pos[:, None] - window
        scores.masked_fill_(hidden[None], float("-inf"))
        probs = scores.softmax(dim=-1)
        out[q0:q1] = torch.einsum("hqk,khd->qhd", probs, v).to(out.dtype)
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (rms_norm(x + residual), x + residual); the sum is rounded to x's dtype first,
    as an unfused model would store it."""
    summed = (x.float() + residual.float()).to(x.dtype)
    return rms_norm(summed, weight, eps), summed


def rms_norm_quant(
    x: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """rms_norm(x) quantized per token for a W8A8 / FP8 layer: (codes, scales [rows, 1])."""
    return quantize_per_token(rms_norm(x, weight, eps).reshape(-1, x.shape[-1]), dtype)


def fused_add_rms_norm_quant(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fused_add_rms_norm with its normed output quantized per token: (codes, scales, x + residual)."""
    normed, summed = fused_add_rms_norm(x, residual, weight, eps)
    return *quantize_per_token(normed.reshape(-1, x.shape[-1]), dtype), summed


def silu_and_mul_quant(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """silu_and_mul(x) quantized per token for a W8A8 / FP8 layer: (codes, scales [rows, 1])."""
    out = silu_and_mul(x)
    return quantize_per_token(out.reshape(-1, out.shape[-1]), dtype)


def rotary_embedding(
    positions: torch.Tensor,  # [T] int
    query: torch.Tensor,  # [T, Hq, D]
    key: torch.Tensor,  # [T, Hkv, D]
    cos_sin_cache: torch.Tensor,  # [max_position, D] fp32: cos in [:, :D/2], sin in [:, D/2:]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neox-style (rotate-half) rotary embedding, as HF Llama applies it."""
    half = query.shape[-1] // 2
    cos_sin = cos_sin_cache[positions.long()]
    cos = cos_sin[:, None, :half]
    sin = cos_sin[:, None, half:]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(query), rotate(key)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x = [gate | up] along the last dim; returns silu(gate) * up."""
    gate, up = x.float().chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate) * up).to(x.dtype)


def fused_moe(
    x: torch.Tensor,  # [T, H]
    gate_up: torch.Tensor,  # [E, 2I, H]: each expert's gate rows, then its up rows
    down: torch.Tensor,  # [E, H, I]
    topk_weights: torch.Tensor,  # [T, K] float32
    topk_ids: torch.Tensor,  # [T, K] int, expert of each of a token's K choices
) -> torch.Tensor:
    """Mixture-of-experts MLP in x's dtype: token t's output is the sum over its K choices of
    topk_weights[t, k] * down[e] @ silu_and_mul(gate_up[e] @ x[t]), e = topk_ids[t, k]. Runs
    expert by expert over the tokens that chose it, summing in float32."""
    top_k = topk_ids.shape[1]
    flat = topk_ids.flatten()
    order = flat.argsort(stable=True)
    tokens = order // top_k
    weights = topk_weights.flatten()[order].float()
    counts = torch.bincount(flat, minlength=gate_up.shape[0]).tolist()
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            rows = tokens[start : start + count]
            h = silu_and_mul(torch.nn.functional.linear(x[rows], gate_up[expert]))
            y = torch.nn.functional.linear(h, down[expert])
            out.index_add_(0, rows, y.float() * weights[start : start + count, None])
        start += count
    return out.to(x.dtype)


# --- quantized linear layers (compressed-tensors layouts, see engine/layers/quant.py) ---------
#
# Weights are [N, K] (out, in). Packed int weights: int32 words [N, K * bits / 32], element i of
# a row in bits [i*bits, i*bits + bits) of word i // (32 // bits), stored offset by 2**(bits-1)
# (unsigned); scales [N, K / group_size] (channel: group_size = K); optional zero points as
# signed ints [N, K / group_size]. Dequantized: w = (code - 2**(bits-1) - zero) * scale.

INT8_HALF_RANGE = 127.5  # (127 - (-128)) / 2: compressed-tensors' symmetric int8 scale divisor


def unpack_int32(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """int32 words [R, W] -> unsigned codes [R, W * 32 / bits] (int32)."""
    shifts = torch.arange(0, 32, bits, device=packed.device, dtype=torch.int32)
    return ((packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)).flatten(-2)


def dequantize_packed(
    packed: torch.Tensor,  # [N, K * bits / 32] int32
    scale: torch.Tensor,  # [N, K / group_size]
    zero: torch.Tensor | None,  # [N, K / group_size] signed ints, or None (symmetric)
    bits: int,
    group_size: int,
) -> torch.Tensor:
    """The float32 weight [N, K]; exact, since codes and zero points are small ints."""
    n = packed.shape[0]
    # [N, groups, group_size] with scales broadcast over the group, not repeated to [N, K]: the
    # CPU engine calls this on every forward, so each full-size temporary costs
    q = unpack_int32(packed, bits).view(n, -1, group_size).float()
    offset = float(1 << (bits - 1))
    q -= offset if zero is None else (zero.float() + offset).unsqueeze(-1)
    return (q * scale.float().unsqueeze(-1)).view(n, -1)


def wna16_gemm(
    x: torch.Tensor,  # [M, K]
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    """x @ W.T for a packed int (4 or 8-bit) weight with group scales, in x's dtype; the CPU
    path dequantizes the weight on every call."""
    w = dequantize_packed(packed, scale, zero, bits, group_size)
    return torch.nn.functional.linear(x.float(), w).to(x.dtype)


def quantize_per_token(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric per-row quantization of x [M, K] to int8 or float8_e4m3fn, computed in
    float32 in compressed-tensors' order of operations (scale = max|x| / half range, an all-zero
    row takes scale eps; q = round(clamp(x / scale))). Returns (q [M, K], scale [M, 1] float32)."""
    xf = x.float()
    lo = torch.clamp(xf.amin(dim=-1, keepdim=True), max=0)
    hi = torch.clamp(xf.amax(dim=-1, keepdim=True), min=0)
    # a tensor divisor: CUDA turns division by a Python number into multiplication by its
    # reciprocal, which rounds differently from compressed-tensors' (and the kernel's) division
    half_range = torch.tensor(FP8_MAX if dtype == torch.float8_e4m3fn else INT8_HALF_RANGE, device=x.device)
    scale = torch.maximum(lo.abs(), hi.abs()) / half_range
    scale = torch.where(scale == 0, torch.finfo(torch.float32).eps, scale)
    if dtype == torch.float8_e4m3fn:
        q = torch.clamp(xf / scale, -FP8_MAX, FP8_MAX).to(dtype)
    elif dtype == torch.int8:
        q = torch.round(torch.clamp(xf / scale, -128, 127)).to(dtype)
    else:
        raise ValueError(f"per-token quantization to {dtype} is not supported (int8, float8_e4m3fn)")
    return q, scale


def quantize_per_tensor(x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Static symmetric quantization of x [M, K] with a calibrated scale [1] (compressed-tensors'
    order of operations: clamp(x / scale), then round to the code). Returns (q, scale as float32)."""
    scale = scale.float().reshape(1)
    y = x.float() / scale
    if dtype == torch.float8_e4m3fn:
        return torch.clamp(y, -FP8_MAX, FP8_MAX).to(dtype), scale
    if dtype == torch.int8:
        return torch.round(torch.clamp(y, -128, 127)).to(dtype), scale
    raise ValueError(f"per-tensor quantization to {dtype} is not supported (int8, float8_e4m3fn)")


def scaled_mm(
    a: torch.Tensor,  # [M, K] int8 or float8_e4m3fn
    b: torch.Tensor,  # [N, K], same dtype
    scale_a: torch.Tensor,  # [M, 1] or [1] float32
    scale_b: torch.Tensor,  # [N, 1] or [1] float32
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(scale_a * a) @ (scale_b * b).T (+ bias): per-token x per-channel (or per-tensor) scaled
    GEMM, computed on the dequantized operands in float32."""
    a_deq = a.float() * scale_a.float().reshape(-1, 1)
    b_deq = b.float() * scale_b.float().reshape(-1, 1)
    out = torch.nn.functional.linear(a_deq, b_deq, None if bias is None else bias.float())
    return out.to(out_dtype)


def block_scaled_mm(
    a: torch.Tensor,  # [M, K] float8_e4m3fn
    b: torch.Tensor,  # [N, K] float8_e4m3fn
    scale_a: torch.Tensor,  # [M, K / group] float32: per token and group of K
    scale_b: torch.Tensor,  # [N, K / group] float32: per output row and group of K
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(scale_a * a) @ (scale_b * b).T (+ bias) with a scale per group of K on both sides (FP8
    block weights, their 128x128 blocks' scales repeated per row), on the dequantized operands
    in float32."""
    out = torch.nn.functional.linear(
        dequantize_groups(a, scale_a), dequantize_groups(b, scale_b), None if bias is None else bias.float()
    )
    return out.to(out_dtype)


def dequantize_groups(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Codes [R, K] times their scales [R, K / group] (each scale over a group of K), in float32."""
    return x.float() * scale.float().repeat_interleave(x.shape[1] // scale.shape[1], dim=1)
