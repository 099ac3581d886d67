import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import kernels
from kernels import cpu, reference

ROOT = Path(__file__).resolve().parents[2]


def test_it_runs_the_references_on_cpu_without_importing_triton():
    code = """
import sys, torch, kernels
from kernels import reference
x = torch.randn(5, 64)
w = torch.rand(64)
assert torch.equal(kernels.rms_norm(x, w, 1e-5), reference.rms_norm(x, w, 1e-5))
assert torch.equal(kernels.silu_and_mul(x), reference.silu_and_mul(x))
assert "triton" not in sys.modules, "importing or calling kernels on CPU loaded triton"
"""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "module, name, args",
    [
        ("norm", "rms_norm", lambda: (torch.randn(3, 64), torch.rand(64), 1e-5)),
        ("norm", "fused_add_rms_norm", lambda: (torch.randn(3, 64), torch.randn(3, 64), torch.rand(64), 1e-5)),
        ("activation", "silu_and_mul", lambda: (torch.randn(3, 64),)),
    ],
)
def test_it_sends_cuda_tensors_to_the_triton_kernels(monkeypatch, module, name, args):
    import importlib

    triton_module = importlib.import_module(f"kernels.{module}")
    calls = []
    real = getattr(triton_module, name)
    monkeypatch.setattr(triton_module, name, lambda *a: calls.append(name) or real(*a))
    cuda_args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args()]
    out = getattr(kernels, name)(*cuda_args)
    ref = getattr(reference, name)(*cuda_args)
    assert calls == [name]
    for o, r in zip(out if isinstance(out, tuple) else (out,), ref if isinstance(ref, tuple) else (ref,)):
        torch.testing.assert_close(o, r)


ON_CUDA = SimpleNamespace(is_cuda=True)  # stands in for a CUDA tensor: only `is_cuda` is read


def fake_triton_module(monkeypatch, module: str, name: str) -> None:
    monkeypatch.setitem(sys.modules, f"kernels.{module}", SimpleNamespace(**{name: lambda *a, **kw: "triton"}))


def test_the_query_not_the_positions_decides_where_rotary_embedding_runs(monkeypatch):
    fake_triton_module(monkeypatch, "rotary", "rotary_embedding")
    positions, cache = torch.zeros(1, dtype=torch.long), torch.zeros(1, 2)
    assert kernels.rotary_embedding(positions, ON_CUDA, ON_CUDA, cache) == "triton"
    assert kernels.rotary_embedding(positions, query=ON_CUDA, key=ON_CUDA, cos_sin_cache=cache) == "triton"
    query = key = torch.zeros(1, 1, 2)
    with pytest.raises(AttributeError):  # the reference twin, handed the stand-in
        kernels.rotary_embedding(ON_CUDA, query, key, cache)


def test_the_deciding_tensor_may_come_by_keyword(monkeypatch):
    fake_triton_module(monkeypatch, "norm", "rms_norm")
    assert kernels.rms_norm(x=ON_CUDA, weight=None, eps=1e-5) == "triton"
    x, w = torch.randn(2, 8), torch.rand(8)
    assert torch.equal(kernels.rms_norm(x=x, weight=w, eps=1e-5), reference.rms_norm(x, w, 1e-5))


def test_scaled_mm_sends_cuda_tensors_to_the_fastest_kernel(monkeypatch):
    fake_triton_module(monkeypatch, "gemm_scaled", "scaled_mm_fastest")
    assert kernels.scaled_mm(ON_CUDA, None, None, None, torch.bfloat16) == "triton"


def test_each_op_keeps_its_twins_signature_and_docs():
    assert inspect.signature(kernels.paged_attention) == inspect.signature(cpu.paged_attention)
    for name in ("rms_norm_quant", "silu_and_mul_quant", "scaled_mm", "wna16_gemm"):
        op, twin = getattr(kernels, name), getattr(reference, name)
        assert inspect.signature(op) == inspect.signature(twin) and op.__doc__ == twin.__doc__
