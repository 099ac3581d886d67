import pytest
import torch

from kernels import reference, rotary
from tests.kernels.conftest import DTYPES, assert_close


def cos_sin_cache(max_position: int, head_dim: int, device: str) -> torch.Tensor:
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.arange(max_position).float()[:, None] * inv_freq[None, :]
    return torch.cat((angles.cos(), angles.sin()), dim=-1).to(device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "tokens, q_heads, kv_heads, head_dim",
    [(1, 4, 4, 64), (7, 6, 2, 128), (19, 9, 3, 48), (5, 32, 8, 128), (11, 5, 1, 80)],
)
def test_it_matches_the_reference_rotary_embedding(device, dtype, tokens, q_heads, kv_heads, head_dim):
    cache = cos_sin_cache(4096, head_dim, device)
    positions = torch.randint(0, 4096, (tokens,), device=device)
    q = torch.randn(tokens, q_heads, head_dim, device=device).to(dtype)
    k = torch.randn(tokens, kv_heads, head_dim, device=device).to(dtype)
    q_out, k_out = rotary.rotary_embedding(positions, q, k, cache)
    q_ref, k_ref = reference.rotary_embedding(positions, q, k, cache)
    assert_close(q_out, q_ref)
    assert_close(k_out, k_ref)


def test_it_reads_query_and_key_views_of_a_fused_projection(device):
    # the engine splits one qkv projection into strided views
    tokens, q_heads, kv_heads, head_dim = 6, 4, 2, 64
    qkv = torch.randn(tokens, (q_heads + 2 * kv_heads) * head_dim, device=device)
    q = qkv[:, : q_heads * head_dim].view(tokens, q_heads, head_dim)
    k = qkv[:, q_heads * head_dim : (q_heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim)
    cache = cos_sin_cache(64, head_dim, device)
    positions = torch.arange(3, 3 + tokens, device=device)
    q_ref, k_ref = reference.rotary_embedding(positions, q, k, cache)
    q_out, k_out = rotary.rotary_embedding(positions, q, k, cache)
    assert_close(q_out, q_ref)
    assert_close(k_out, k_ref)


def test_it_refuses_an_odd_head_dim(device):
    q = torch.randn(2, 2, 7, device=device)
    with pytest.raises(ValueError, match="even head_dim"):
        rotary.rotary_embedding(torch.zeros(2, dtype=torch.long, device=device), q, q, cos_sin_cache(4, 6, device))
