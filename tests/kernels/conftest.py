import os

import pytest
import torch

# Triton runs CPU tensors only in its interpreter (tests/conftest.py turns it on without CUDA);
# with a GPU the same tests run on CUDA under the `gpu` marker.
DEVICES = [
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="Triton interpreter is off"),
    ),
    pytest.param("cuda", marks=pytest.mark.gpu),
]

# ||out - ref|| / ||ref|| bounds: both sides round to the dtype once (the interpreter rounds
# bf16 toward zero, a full ulp), fp32 differs by summation order only
REL_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def poisoned_like(t: torch.Tensor) -> torch.Tensor:
    """An output buffer whose unwritten elements show up as NaN."""
    return torch.full_like(t, float("nan"))


def assert_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    err = (out.double() - ref.double()).norm() / ref.double().norm()
    assert err <= REL_TOL[ref.dtype], f"relative error {err.item():.3g} > {REL_TOL[ref.dtype]:g} ({ref.dtype})"
