"""Dynamic per-token activation quantization and the int8 / FP8 scaled GEMM against their
reference twins; the quantization twin against compressed-tensors' own."""

import pytest
import torch

from kernels import reference
from tests.kernels.conftest import DTYPES, assert_close

QDTYPES = [torch.int8, torch.float8_e4m3fn]


def activations(m: int, k: int, device: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # channels over five decades, as after a norm with outlier channels; one all-zero token
    x = torch.randn(m, k, device=device) * torch.logspace(-3, 2, k, device=device)
    if m > 2:
        x[2] = 0
    return x.to(dtype)


@pytest.mark.parametrize("qdtype", QDTYPES, ids=["int8", "fp8"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("passes", [1, 2])
def test_quantization_gives_the_references_codes_and_scales(device, qdtype, dtype, passes, monkeypatch):
    from kernels import gemm_scaled
    from kernels.gemm_scaled import quantize_per_token

    if passes == 2:  # rows longer than a register block are read twice
        monkeypatch.setattr(gemm_scaled, "_MAX_ROW_BLOCK", 128)
    x = activations(37, 300, device, dtype)
    q, scale = quantize_per_token(x, qdtype)
    q_ref, scale_ref = reference.quantize_per_token(x, qdtype)
    assert q.dtype == qdtype and scale.shape == (37, 1) and scale.dtype == torch.float32
    assert torch.equal(scale, scale_ref)
    assert torch.equal(q.float(), q_ref.float())


@pytest.mark.parametrize("scheme", ["W8A8", "FP8_DYNAMIC"])
def test_the_quantization_twin_is_compressed_tensors_fake_quantization(scheme):
    cq = pytest.importorskip("compressed_tensors.quantization")
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp

    args = cq.preset_name_to_scheme(scheme, ["Linear"]).input_activations
    x = activations(17, 64, "cpu").unsqueeze(0)  # [batch, tokens, hidden], as a Linear sees it there
    scale, zp = compute_dynamic_scales_and_zp(x, args, module=None)
    q, s = reference.quantize_per_token(x[0], torch.int8 if scheme == "W8A8" else torch.float8_e4m3fn)
    assert torch.equal(q.float() * s, fake_quantize(x, scale, zp, args)[0])


@pytest.mark.parametrize("qdtype", QDTYPES, ids=["int8", "fp8"])
@pytest.mark.parametrize("per_tensor", [False, True], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("m", [1, 45])
def test_scaled_mm_matches_the_reference(device, qdtype, per_tensor, m):
    from kernels.gemm_scaled import scaled_mm

    n, k = 96, 200
    a, scale_a = reference.quantize_per_token(activations(m, k, device), qdtype)
    b, scale_b = reference.quantize_per_token(torch.randn(n, k, device=device), qdtype)
    if per_tensor:
        scale_b = scale_b.max().reshape(1)
    out = scaled_mm(a, b, scale_a, scale_b, torch.float32)
    ref = reference.scaled_mm(a, b, scale_a, scale_b, torch.float32)
    if qdtype == torch.float8_e4m3fn and device == "cuda":
        # Hopper's FP8 tensor cores add products with fewer mantissa bits than float32
        assert ((out - ref).norm() / ref.norm()).item() < 2e-4
    else:
        assert_close(out, ref)


@pytest.mark.parametrize("qdtype", QDTYPES, ids=["int8", "fp8"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scaled_mm_writes_16_bit_outputs_with_a_bias(device, qdtype, dtype):
    from kernels.gemm_scaled import scaled_mm

    a, scale_a = reference.quantize_per_token(activations(33, 128, device), qdtype)
    b, scale_b = reference.quantize_per_token(torch.randn(64, 128, device=device), qdtype)
    bias = torch.randn(64, device=device).to(dtype)
    out = scaled_mm(a, b, scale_a, scale_b, dtype, bias)
    assert_close(out, reference.scaled_mm(a, b, scale_a, scale_b, dtype, bias))


def test_scaled_mm_refuses_mixed_operands():
    from kernels.gemm_scaled import scaled_mm

    a = torch.zeros(2, 16, dtype=torch.int8)
    with pytest.raises(ValueError, match="one dtype"):
        scaled_mm(a, a.to(torch.float8_e4m3fn), torch.ones(1), torch.ones(1), torch.float32)


def _per_group(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    q, scale = reference.quantize_per_token(x.reshape(-1, group), torch.float8_e4m3fn)
    return q.view(x.shape), scale.view(x.shape[0], -1)


@pytest.mark.parametrize("group", [128, 32, 48])
@pytest.mark.parametrize("m", [1, 45])
def test_block_scaled_mm_matches_the_reference(device, group, m):
    from kernels.gemm_scaled import block_scaled_mm

    n, k = 96, 384
    a, scale_a = _per_group(activations(m, k, device), group)
    b, scale_b = _per_group(torch.randn(n, k, device=device) * torch.logspace(-2, 1, n, device=device)[:, None], group)
    bias = torch.randn(n, device=device).to(torch.bfloat16)
    out = block_scaled_mm(a, b, scale_a, scale_b, torch.float32)
    ref = reference.block_scaled_mm(a, b, scale_a, scale_b, torch.float32)
    if device == "cuda":  # Hopper's FP8 tensor cores add with fewer mantissa bits than float32
        assert ((out - ref).norm() / ref.norm()).item() < 2e-4
    else:
        assert_close(out, ref)
    with_bias = block_scaled_mm(a, b, scale_a, scale_b, torch.bfloat16, bias)
    assert_close(with_bias, reference.block_scaled_mm(a, b, scale_a, scale_b, torch.bfloat16, bias))


def test_block_scaled_mm_refuses_scales_that_are_not_whole_groups():
    from kernels.gemm_scaled import block_scaled_mm

    a = torch.zeros(2, 96, dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="whole groups"):
        block_scaled_mm(a, a, torch.ones(2, 3), torch.ones(2, 2), torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("qdtype", QDTYPES, ids=["int8", "fp8"])
def test_the_dispatcher_sends_cuda_tensors_to_the_fastest_kernel(qdtype):
    import kernels

    x = activations(40, 256, "cuda", torch.bfloat16)
    q, scale = kernels.quantize_per_token(x, qdtype)
    b, scale_b = reference.quantize_per_token(torch.randn(128, 256, device="cuda"), qdtype)
    out = kernels.scaled_mm(q, b, scale, scale_b, torch.bfloat16)
    assert_close(out, reference.scaled_mm(q, b, scale, scale_b, torch.bfloat16))
