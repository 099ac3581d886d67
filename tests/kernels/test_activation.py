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


@pytest.mark.parametrize("quant", [torch.int8, torch.float8_e4m3fn], ids=["int8", "fp8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_fused_quantization_equals_silu_and_mul_then_quantize(device, quant, dtype):
    # a W8A8 / FP8 down projection's input: the separate quantize kernel's codes and scales for
    # this kernel's own output, bit for bit
    from kernels import gemm_scaled

    x = (torch.randn(11, 2 * 1000, device=device) * 4).to(dtype)
    x[3] = 0  # an all-zero row takes the smallest scale
    q, scale = activation.silu_and_mul_quant(x, quant)
    ref_q, ref_scale = gemm_scaled.quantize_per_token(activation.silu_and_mul(x), quant)
    assert q.dtype == quant and scale.shape == (11, 1)
    assert torch.equal(scale, ref_scale)
    assert torch.equal(q.view(torch.int8), ref_q.view(torch.int8))
    # the CPU twin agrees to a step of the code (the two silu's last bits may differ)
    twin_q, twin_scale = reference.silu_and_mul_quant(x, quant)
    deq, twin_deq = q.float() * scale, twin_q.float() * twin_scale
    assert ((twin_deq - deq).abs() <= 0.13 * deq.abs() + 2 * scale).all()


def test_it_leaves_rows_longer_than_a_program_to_the_layer(device):
    from kernels import FUSED_QUANT_MAX_COLS

    with pytest.raises(ValueError, match="separate pass"):
        activation.silu_and_mul_quant(torch.zeros(1, 2 * (FUSED_QUANT_MAX_COLS + 64), device=device), torch.int8)
