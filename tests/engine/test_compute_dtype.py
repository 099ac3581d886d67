"""dtype="auto": the checkpoint's dtype on a GPU; on a CPU, bfloat16 only with native bf16 math,
float32 for half-precision checkpoints otherwise (common.dtypes)."""

from pathlib import Path

import pytest
import torch

import common.dtypes
from common.dtypes import compute_dtype
from engine import LLM


@pytest.mark.parametrize(
    "stored, device, native_bf16, expected",
    [
        ("bfloat16", "cpu", False, "float32"),
        ("bfloat16", "cpu", True, "bfloat16"),
        ("float16", "cpu", True, "float32"),
        ("float32", "cpu", False, "float32"),
        ("bfloat16", "cuda", False, "bfloat16"),
        ("float16", "cuda", False, "float16"),
    ],
)
def test_it_picks_the_fastest_dtype_that_keeps_the_results(monkeypatch, stored, device, native_bf16, expected):
    monkeypatch.setattr(common.dtypes, "cpu_has_native_bf16", lambda: native_bf16)
    assert compute_dtype(stored, device) == expected


@pytest.mark.parametrize("native_bf16, expected", [(False, torch.float32), (True, torch.bfloat16)])
def test_it_runs_a_bf16_checkpoint_in_the_policys_dtype_on_the_cpu(make_checkpoint, monkeypatch, native_bf16, expected):
    monkeypatch.setattr(common.dtypes, "cpu_has_native_bf16", lambda: native_bf16)
    llm = LLM(make_checkpoint(dtype=torch.bfloat16), device="cpu")
    assert llm.config.dtype == expected
    assert {p.dtype for p in llm.model.parameters() if p.is_floating_point()} == {expected}
    assert LLM(make_checkpoint(dtype=torch.bfloat16), device="cpu", dtype="bfloat16").config.dtype == torch.bfloat16


def test_it_reports_what_this_cpu_has():
    """The probe agrees with the kernel's own list of CPU flags."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    assert common.dtypes.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))
