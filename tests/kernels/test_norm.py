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


@pytest.mark.parametrize("quant", [torch.int8, torch.float8_e4m3fn], ids=["int8", "fp8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("residual", [False, True], ids=["norm", "add-norm"])
def test_the_fused_quantization_equals_norm_then_quantize(device, quant, dtype, residual):
    # the W8A8 / FP8 layers' input: the same codes and scales as the separate quantize kernel
    # gives for this kernel's own normed output, bit for bit
    from kernels import gemm_scaled

    x = torch.randn(13, 576, device=device).to(dtype) * 3
    x[5] = 0  # an all-zero row takes the smallest scale
    weight = (torch.rand(576, device=device) + 0.5).to(dtype)
    if residual:
        res = torch.randn(13, 576, device=device).to(dtype)
        res[5] = 0
        q, scale, summed = norm.fused_add_rms_norm_quant(x, res, weight, 1e-5, quant)
        normed, ref_summed = norm.fused_add_rms_norm(x, res, weight, 1e-5)
        assert torch.equal(summed, ref_summed)
    else:
        q, scale = norm.rms_norm_quant(x, weight, 1e-5, quant)
        normed = norm.rms_norm(x, weight, 1e-5)
    ref_q, ref_scale = gemm_scaled.quantize_per_token(normed, quant)
    assert q.dtype == quant and scale.shape == (13, 1)
    assert torch.equal(scale, ref_scale)
    assert torch.equal(q.view(torch.int8), ref_q.view(torch.int8))
    # the CPU twin (the reference's norm, then its quantizer) agrees to a step of the code: the
    # two norms differ in the last bit of the activation dtype, which can move a code or a scale
    twin = (
        reference.fused_add_rms_norm_quant(x, res, weight, 1e-5, quant)
        if residual
        else reference.rms_norm_quant(x, weight, 1e-5, quant)
    )
    deq, twin_deq = q.float() * scale, twin[0].float() * twin[1]
    assert ((twin_deq - deq).abs() <= 0.13 * deq.abs() + 2 * scale).all()


def test_it_refuses_a_quantized_dtype_it_cannot_make():
    with pytest.raises(ValueError, match="not supported"):
        norm.rms_norm_quant(torch.randn(2, 64), torch.ones(64), 1e-5, torch.float16)
