import pytest
import torch

from kernels import cache, reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("num_kv_heads, head_dim, block_size", [(1, 64, 16), (3, 80, 16), (8, 128, 16), (2, 32, 5)])
def test_it_scatters_keys_and_values_to_their_slots(device, dtype, num_kv_heads, head_dim, block_size):
    num_blocks, tokens = 9, 23
    k_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, device=device).to(dtype)
    v_cache = torch.randn_like(k_cache)
    key = torch.randn(tokens, num_kv_heads, head_dim, device=device).to(dtype)
    value = torch.randn_like(key)
    slot_mapping = torch.randperm(num_blocks * block_size, device=device)[:tokens]
    slot_mapping[[2, 11, 22]] = -1  # CUDA-graph padding: not stored
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    reference.store_kvcache(key, value, ref_k, ref_v, slot_mapping)
    cache.store_kvcache(key, value, k_cache, v_cache, slot_mapping)
    # a copy is exact, and every slot outside the mapping keeps its old value
    assert torch.equal(k_cache, ref_k)
    assert torch.equal(v_cache, ref_v)


def test_it_stores_from_views_of_a_fused_projection(device):
    tokens, q_heads, kv_heads, head_dim = 5, 4, 2, 64
    qkv = torch.randn(tokens, (q_heads + 2 * kv_heads) * head_dim, device=device)
    key = qkv[:, q_heads * head_dim : (q_heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim)
    value = qkv[:, (q_heads + kv_heads) * head_dim :].view(tokens, kv_heads, head_dim)
    k_cache = torch.randn(4, 16, kv_heads, head_dim, device=device)
    v_cache = torch.randn_like(k_cache)
    slot_mapping = torch.tensor([17, 18, 19, 40, 0], device=device, dtype=torch.int32)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    reference.store_kvcache(key, value, ref_k, ref_v, slot_mapping)
    cache.store_kvcache(key, value, k_cache, v_cache, slot_mapping)
    assert torch.equal(k_cache, ref_k)
    assert torch.equal(v_cache, ref_v)
