import pytest
import torch

from kernels import activation, reference
from tests.kernels.conftest import DTYPES, assert_close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, inter", [(1, 64), (13, 1536), (6, 1000), (3, 5000)])
def test_it_matches_the_reference_silu_and_mul(device, dtype, rows, inter):
    x = (torch.randn(rows, 2 * inter, device=device) * 4).to(dtype)
    out = activation.silu_and_mul(x)
    assert_close(out, reference.silu_and_mul(x))


def test_it_keeps_leading_dimensions(device):
    x = torch.randn(2, 5, 2 * 96, device=device)
    out = activation.silu_and_mul(x)
    assert out.shape == (2, 5, 96)
    assert_close(out, reference.silu_and_mul(x))
