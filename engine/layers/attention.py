import math
from dataclasses import dataclass

import torch
from torch import nn

import kernels
from common.threads import one_cpu_thread


@dataclass
class AttentionMetadata:
    """Where this step's tokens go in the paged KV cache and what each one attends to
    (the layout `kernels.paged_attention` documents)."""

    slot_mapping: torch.Tensor  # [T] int64
    block_tables: torch.Tensor  # [B, max_blocks] int32
    seq_lens: torch.Tensor  # [B] int32, cached + new tokens
    query_start_loc: torch.Tensor  # [B + 1] int32


class PagedAttention(nn.Module):
    """Stores this step's K/V into the layer's cache blocks, then attends over each sequence's
    cached context, or its last `window` positions; prefill chunks and decodes of many sequences
    share one call. `softcap` caps the scores (`kernels.paged_attention`). An FP8 cache holds
    K / k_scale and V / v_scale (the checkpoint's per-tensor scales, else 1.0, as in vLLM); a cache
    of the compute dtype ignores them."""

    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float | None = None,
        window: int | None = None,
        softcap: float | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5 if scale is None else scale
        self.window = window
        self.softcap = softcap
        # views into the engine's cache tensor, bound by the runner once it is allocated
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)
        # Python numbers rather than tensors: a kernel argument needs no device read, and a
        # CUDA graph captures it as it is
        self.k_scale = 1.0
        self.v_scale = 1.0

    def load_kv_scale(self, which: str, kind: str, tensor: torch.Tensor, name: str) -> None:
        """A checkpoint's K or V (`which`) cache scale, or its zero point (`kind`), which must be 0."""
        if tensor.numel() != 1:
            raise ValueError(
                f"{name}: a KV-cache {kind} of shape {tuple(tensor.shape)}; only one per tensor is supported yet"
            )
        value = tensor.float().item()
        if kind == "zero_point":
            if value != 0:
                raise ValueError(f"{name}: asymmetric KV-cache quantization (zero point {value:g}) is not supported")
            return
        if not 0 < value < math.inf:
            raise ValueError(f"{name}: KV-cache scale {value!r} is not a positive finite number")
        setattr(self, f"{which}_scale", value)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        with one_cpu_thread(not q.is_cuda):
            kernels.store_kvcache(
                k, v, self.k_cache, self.v_cache, meta.slot_mapping, k_scale=self.k_scale, v_scale=self.v_scale
            )
            return kernels.paged_attention(
                q,
                self.k_cache,
                self.v_cache,
                meta.block_tables,
                meta.seq_lens,
                meta.query_start_loc,
                self.scale,
                window=self.window,
                softcap=self.softcap,
                k_scale=self.k_scale,
                v_scale=self.v_scale,
            )
