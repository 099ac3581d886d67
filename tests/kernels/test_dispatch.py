import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels import reference

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
