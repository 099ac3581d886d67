"""The W4A16 / W8A16 dequant-GEMM against its reference twin, and the twin against the
compressed-tensors packing it reads."""

import pytest
import torch

from kernels import reference
from tests.kernels.conftest import DTYPES, assert_close


def random_packed(n: int, k: int, bits: int, groups: int, asym: bool, device: str):
    packed = torch.randint(-(2**31), 2**31 - 1, (n, k * bits // 32), dtype=torch.int32, device=device)
    scale = torch.rand(n, groups, device=device) * 0.02 + 0.001
    zero = (
        torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (n, groups), dtype=torch.int8, device=device)
        if asym
        else None
    )
    return packed, scale, zero


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("asym", [False, True], ids=["sym", "asym"])
@pytest.mark.parametrize("group", [32, 64, None], ids=["g32", "g64", "channel"])
@pytest.mark.parametrize("m", [1, 7, 19], ids=["gemv", "fused", "dequant"])
def test_it_matches_the_reference(device, bits, asym, group, m):
    from kernels.gemm_wna16 import wna16_gemm

    n, k = 80, 192
    group_size = group or k
    packed, scale, zero = random_packed(n, k, bits, k // group_size, asym, device)
    x = torch.randn(m, k, device=device)
    out = wna16_gemm(x, packed, scale, zero, bits, group_size)
    assert_close(out, reference.wna16_gemm(x, packed, scale, zero, bits, group_size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("split_k", [1, 3])
@pytest.mark.parametrize("kernel", ["gemv", "strided", "interleaved", "dequant"])
def test_every_path_matches_in_every_dtype_with_and_without_split_k(device, dtype, split_k, kernel):
    from kernels.gemm_wna16 import Config, wna16_gemm

    if kernel == "dequant" and split_k > 1:
        pytest.skip("the dequant path does not split K")
    n, k, group_size = 72, 384, 128
    packed, scale, zero = random_packed(n, k, 4, k // group_size, True, device)
    x = torch.randn(3, 5, k, device=device).to(dtype)  # leading dims are kept
    out = wna16_gemm(x, packed, scale.to(dtype), zero, 4, group_size, Config(kernel, 16, 32, 128, split_k, 4, 2))
    assert out.shape == (3, 5, n)
    ref = reference.wna16_gemm(x.reshape(15, k), packed, scale.to(dtype), zero, 4, group_size).view(3, 5, n)
    assert_close(out, ref)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("asym", [False, True], ids=["sym", "asym"])
def test_the_dequantized_weight_is_exact(device, bits, asym):
    from kernels.gemm_wna16 import dequantize

    n, k, group_size = 40, 512, 64  # the kernel's 32 x 256 blocks, a partial block of rows
    packed, scale, zero = random_packed(n, k, bits, k // group_size, asym, device)
    out = dequantize(packed, scale, zero, bits, group_size, torch.float32)
    assert torch.equal(out, reference.dequantize_packed(packed, scale, zero, bits, group_size))


def test_the_path_follows_the_number_of_rows():
    from kernels.gemm_wna16 import FUSED_MAX_M, GEMV_MAX_M, default_config

    def kernel(m: int, group_size: int = 128, bits: int = 4) -> str:
        return default_config(m, 4096, 4096, group_size, bits, torch.device("cpu")).kernel

    assert [kernel(m) for m in (1, GEMV_MAX_M)] == ["gemv", "gemv"]
    assert [kernel(m) for m in (GEMV_MAX_M + 1, FUSED_MAX_M)] == ["strided", "strided"]
    assert kernel(FUSED_MAX_M, group_size=32) == "interleaved"  # 4 words: under the tensor cores' K step
    assert kernel(FUSED_MAX_M, group_size=32, bits=8) == "interleaved"
    assert [kernel(m) for m in (FUSED_MAX_M + 1, 4096)] == ["dequant", "dequant"]
    assert default_config(1, 4096, 4096, 128, 4, torch.device("cpu")).block_m == 1


def test_it_refuses_a_group_that_a_k_tile_would_cross():
    from kernels.gemm_wna16 import Config, wna16_gemm

    packed, scale, _ = random_packed(16, 128, 4, 4, False, "cpu")
    with pytest.raises(ValueError, match="group size 32"):
        wna16_gemm(torch.randn(2, 128), packed, scale, None, 4, 32, Config("strided", 16, 16, 64))


@pytest.mark.parametrize("bits", [4, 8])
def test_the_reference_reads_compressed_tensors_packing(bits):
    ct = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    codes = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (24, 64), dtype=torch.int8)
    packed = ct.pack_to_int32(codes, bits)
    assert packed.dtype == torch.int32 and packed.shape == (24, 64 * bits // 32)
    assert torch.equal(reference.unpack_int32(packed, bits) - (1 << (bits - 1)), codes.int())
    # zero points are packed along the output dim: the engine unpacks the transpose
    zp = ct.pack_to_int32(codes, bits, packed_dim=0)
    assert torch.equal(reference.unpack_int32(zp.t(), bits).t()[:24] - (1 << (bits - 1)), codes.int())
