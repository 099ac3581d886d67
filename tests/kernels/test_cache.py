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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_it_quantizes_into_an_fp8_cache(device, dtype):
    num_blocks, block_size, kv_heads, head_dim, tokens = 9, 16, 2, 64, 23
    k_cache = torch.zeros(num_blocks, block_size, kv_heads, head_dim, device=device, dtype=torch.float8_e4m3fn)
    v_cache = torch.zeros_like(k_cache)
    # keys past 448 * k_scale clamp; values small enough to need the subnormal codes
    key = (torch.randn(tokens, kv_heads, head_dim, device=device) * 8).to(dtype)
    value = (torch.randn(tokens, kv_heads, head_dim, device=device) * 0.01).to(dtype)
    slot_mapping = torch.randperm(num_blocks * block_size, device=device)[:tokens]
    slot_mapping[[2, 11]] = -1
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    scales = dict(k_scale=0.015, v_scale=3e-4)
    reference.store_kvcache(key, value, ref_k, ref_v, slot_mapping, **scales)
    cache.store_kvcache(key, value, k_cache, v_cache, slot_mapping, **scales)
    assert torch.equal(k_cache.view(torch.uint8), ref_k.view(torch.uint8))
    assert torch.equal(v_cache.view(torch.uint8), ref_v.view(torch.uint8))
    assert (ref_k.float().abs() == 448).any() and (ref_v.float().abs() < 2**-6).any()
    # dequantized, within FP8's rounding (half of 2**-3 relative) of what was stored
    stored = slot_mapping >= 0
    k = ref_k.view(-1, kv_heads, head_dim)[slot_mapping[stored]].float() * 0.015
    assert torch.allclose(k, key[stored].float().clamp(-448 * 0.015, 448 * 0.015), rtol=2**-4, atol=0.015 * 2**-10)
