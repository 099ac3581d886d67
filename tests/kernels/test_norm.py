import pytest
import torch

from kernels import norm, reference
from tests.kernels.conftest import DTYPES, assert_close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, hidden", [(1, 64), (7, 576), (33, 1000), (5, 4096)])
def test_it_matches_the_reference_rms_norm(device, dtype, rows, hidden):
    x = torch.randn(rows, hidden, device=device).to(dtype) * 3
    weight = (torch.rand(hidden, device=device) + 0.5).to(dtype)
    out = norm.rms_norm(x, weight, 1e-5)
    assert_close(out, reference.rms_norm(x, weight, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, hidden", [(3, 96), (17, 576), (4, 3000)])
def test_it_matches_the_reference_fused_add_rms_norm(device, dtype, rows, hidden):
    x = torch.randn(rows, hidden, device=device).to(dtype)
    residual = torch.randn(rows, hidden, device=device).to(dtype) * 4
    weight = (torch.rand(hidden, device=device) + 0.5).to(dtype)
    out, summed = norm.fused_add_rms_norm(x, residual, weight, 1e-6)
    ref_out, ref_summed = reference.fused_add_rms_norm(x, residual, weight, 1e-6)
    assert_close(summed, ref_summed)
    assert_close(out, ref_out)


def test_it_reads_a_strided_row_view(device):
    # the engine may hand in a column slice of a wider activation
    wide = torch.randn(9, 2 * 320, device=device)
    x = wide[:, :320]
    weight = torch.rand(320, device=device) + 0.5
    assert_close(norm.rms_norm(x, weight, 1e-5), reference.rms_norm(x, weight, 1e-5))


def test_it_keeps_leading_dimensions(device):
    x = torch.randn(2, 3, 128, device=device)
    weight = torch.rand(128, device=device)
    out = norm.rms_norm(x, weight, 1e-5)
    assert out.shape == (2, 3, 128)
    assert_close(out, reference.rms_norm(x, weight, 1e-5))
