"""Our own quantized GEMM for x86 CPUs (kernels/cpu_qgemm.c): float32 activations times int4,
int8 or FP8 weights read in their quantized form, repacked once at load.

A decode step on the CPU is bound by the bytes of weight it reads, so a dequantized copy (the
"dense" plan) runs at the float32 model's speed at best, and PyTorch's packed CPU kernels have no
AVX2 bodies. This kernel reads 1/8 (int4) or 1/4 (int8, FP8) of float32's bytes.

The C file is compiled on first use with the machine's C compiler into a cache keyed by its
source, the compiler's version and the flags (XDG_CACHE_HOME or ~/.cache, under hub/cpu-kernels;
HUB_KERNEL_CACHE overrides), and loaded with ctypes, which releases the GIL while it runs. Where
the CPU lacks AVX2 / FMA / F16C or there is no compiler, `unavailable()` says why and the layers
take another plan.
"""

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).with_name("cpu_qgemm.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC")
ROWS_PER_BLOCK = 8  # output rows per packed block: one 8-lane vector
# from this many activation rows on (prefills), slabs of the weight are built in float32 and
# PyTorch's GEMM multiplies them: it blocks over the rows, where the kernel streams every row
# past each block of 8 columns (bench/cpu_quant.py)
PREFILL_ROWS = 64
PREFILL_WEIGHTS = 1 << 22  # floats per slab (16 MiB)
FP8_SHIFT_SCALE = 256.0  # e4m3 bits read as a half float are the value / 2^8
KINDS = ("w4", "w8", "f8")


class NativeUnavailable(RuntimeError):
    """The native kernel cannot run in this process (CPU features, compiler)."""


def _cache_dir() -> Path:
    if os.environ.get("HUB_KERNEL_CACHE"):
        return Path(os.environ["HUB_KERNEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hub" / "cpu-kernels"


def _cpu_has_features() -> bool:
    # AVX2 CPUs all have FMA and F16C except a few early VIA and emulated ones; ask the kernel's list
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return False
    return {"avx2", "fma", "f16c"} <= flags


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled kernel, built on first use."""
    if not _cpu_has_features():
        raise NativeUnavailable("the native CPU kernel needs an x86 CPU with AVX2, FMA and F16C")
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise NativeUnavailable(f"the native CPU kernel is compiled on first use and no C compiler ({cc}) was found")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join((SOURCE.read_text(), version, *FLAGS)).encode()).hexdigest()[:16]
    path = _cache_dir() / f"cpu_qgemm-{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # built beside its final name and renamed, so concurrent workers never load half a file
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                built = Path(tmp) / path.name
                done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True, text=True)
                if done.returncode:
                    raise NativeUnavailable(f"compiling {SOURCE.name} with {cc} failed: {done.stderr[-2000:]}")
                os.replace(built, path)
        lib = ctypes.CDLL(str(path))
    except OSError as e:  # a cache folder it cannot write, a library it cannot load
        raise NativeUnavailable(f"the native CPU kernel could not be built or loaded in {path.parent}: {e}") from None
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for kind in KINDS:
        for name, args in (
            (f"hub_qgemm_{kind}", [p, i64, i64, p, p, p, i64, i64, p, i32]),
            (f"hub_dequant_{kind}", [p, p, p, i64, i64, i64, p, i32]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = None, args
    lib.hub_fake_quant.restype, lib.hub_fake_quant.argtypes = None, [p, i64, i64, i32, p]
    return lib


def unavailable() -> str | None:
    """Why the native kernel cannot run here, or None where it can."""
    try:
        library()
    except NativeUnavailable as e:
        return str(e)
    return None


@dataclass(frozen=True)
class NativeWeight:
    """A weight [n, k] repacked for the kernel (layouts in kernels/cpu_qgemm.c)."""

    kind: str  # w4 | w8 | f8
    codes: torch.Tensor  # w4: int32 words [n/8, k/8, 8]; w8: int8 [n/8, k, 8]; f8: float8 bits [n/8, k, 8]
    scale: torch.Tensor  # float32 [n/8, k/group, 8]
    offset: torch.Tensor  # int32 [n/8, k/group, 8]: the stored code that means zero
    n: int
    k: int
    group: int


def refusal(n: int, k: int, group: int) -> str | None:
    """Why the kernel cannot take a weight [n, k] in groups of `group`, or None."""
    if n % ROWS_PER_BLOCK or k % group or group % 8:
        return f"the native CPU kernel needs N % 8 == 0 and groups of a multiple of 8 dividing K (got [{n}, {k}], group {group})"
    return None


def _blocks(t: torch.Tensor) -> torch.Tensor:
    """[n, c] -> [n/8, c, 8]: eight rows side by side."""
    n, c = t.shape
    return t.reshape(n // ROWS_PER_BLOCK, ROWS_PER_BLOCK, c).transpose(1, 2).contiguous()


def _check(n: int, k: int, group: int) -> None:
    if (why := refusal(n, k, group)) is not None:
        raise ValueError(why)


def pack_wna16(
    packed: torch.Tensor,  # [n, k * bits / 32] int32, compressed-tensors' pack-quantized layout
    scale: torch.Tensor,  # [n, k / group]
    zero: torch.Tensor | None,  # [n, k / group] signed zero points, or None
    bits: int,
) -> NativeWeight:
    """A pack-quantized weight: w = (code - 2^(bits-1) - zero) * scale."""
    from kernels.reference import unpack_int32

    n, k = packed.shape[0], packed.shape[1] * 32 // bits
    group = k // scale.shape[1]
    _check(n, k, group)
    zero = torch.zeros(scale.shape, dtype=torch.int32) if zero is None else zero.to(torch.int32)
    if bits == 4:  # the stored words as they are: nibble i of word w is column 8w + i
        return NativeWeight("w4", _blocks(packed), _blocks(scale.float()), _blocks(zero + 8), n, k, group)
    if bits == 8:  # codes minus 128 fit int8; what remains of the offset is the zero point
        codes = (unpack_int32(packed, 8) - 128).to(torch.int8)
        return NativeWeight("w8", _blocks(codes), _blocks(scale.float()), _blocks(zero), n, k, group)
    raise ValueError(f"the native CPU kernel takes 4- or 8-bit codes, not {bits}")


def pack_scaled(weight: torch.Tensor, scale: torch.Tensor) -> NativeWeight:
    """An int8 or float8_e4m3fn weight [n, k] with one scale per row: w = weight * scale."""
    n, k = weight.shape
    _check(n, k, k)
    scale = scale.float().reshape(n, 1)
    offset = torch.zeros(n // ROWS_PER_BLOCK, 1, ROWS_PER_BLOCK, dtype=torch.int32)
    if weight.dtype == torch.int8:
        return NativeWeight("w8", _blocks(weight), _blocks(scale), offset, n, k, k)
    if weight.dtype != torch.float8_e4m3fn:
        raise ValueError(f"the native CPU kernel takes int8 or float8_e4m3fn weights, not {weight.dtype}")
    return NativeWeight("f8", _blocks(weight.view(torch.uint8)), _blocks(scale * FP8_SHIFT_SCALE), offset, n, k, k)


def fake_quantize(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x [m, k] quantized per row to int8 or float8_e4m3fn and back to float32: what
    `reference.quantize_per_token` then `q.float() * scale` give, bit for bit, in one pass."""
    if dtype not in (torch.int8, torch.float8_e4m3fn):
        raise ValueError(f"per-token quantization to {dtype} is not supported (int8, float8_e4m3fn)")
    x = x.float().contiguous()
    out = torch.empty_like(x)
    library().hub_fake_quant(x.data_ptr(), x.shape[0], x.shape[1], int(dtype == torch.float8_e4m3fn), out.data_ptr())
    return out


def dequantize(
    w: NativeWeight, start: int = 0, stop: int | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Rows start:stop (multiples of 8) of the float32 weight, (code - offset) * scale as the
    reference builds it, into `out` if given."""
    stop = w.n if stop is None else stop
    if start % ROWS_PER_BLOCK or stop % ROWS_PER_BLOCK:
        raise ValueError(f"rows {start}:{stop} are not whole blocks of {ROWS_PER_BLOCK}")
    out = torch.empty(stop - start, w.k, dtype=torch.float32) if out is None else out
    blocks = slice(start // ROWS_PER_BLOCK, stop // ROWS_PER_BLOCK)
    getattr(library(), f"hub_dequant_{w.kind}")(
        w.codes[blocks].data_ptr(), w.scale[blocks].data_ptr(), w.offset[blocks].data_ptr(), stop - start, w.k,
        w.group, out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return out


def _prefill_mm(x: torch.Tensor, w: NativeWeight) -> torch.Tensor:
    """x @ W^T for many rows: PREFILL_WEIGHTS floats of weight built at a time, each slab
    multiplied by PyTorch's float32 GEMM, so a prefill runs at the float32 model's speed."""
    rows = max(ROWS_PER_BLOCK, PREFILL_WEIGHTS // w.k // ROWS_PER_BLOCK * ROWS_PER_BLOCK)
    if rows >= w.n:
        return F.linear(x, dequantize(w))
    out = torch.empty(x.shape[0], w.n, dtype=torch.float32)
    slab = torch.empty(rows, w.k, dtype=torch.float32)
    for start in range(0, w.n, rows):
        stop = min(w.n, start + rows)
        out[:, start:stop] = F.linear(x, dequantize(w, start, stop, slab[: stop - start]))
    return out


def mm(x: torch.Tensor, w: NativeWeight, activations: torch.dtype | None = None) -> torch.Tensor:
    """x [m, k] @ W^T in float32 -> [m, n] float32; with `activations` (int8 or FP8), x is first
    quantized per token to it (`fake_quantize`), as W8A8 and FP8 models run. From PREFILL_ROWS
    rows on, the weight is built for the call (`_prefill_mm`)."""
    x = fake_quantize(x, activations) if activations is not None else x.float().contiguous()
    m = x.shape[0]
    if m >= PREFILL_ROWS:
        return _prefill_mm(x, w)
    y = torch.empty(m, w.n, dtype=torch.float32)
    if m:
        getattr(library(), f"hub_qgemm_{w.kind}")(
            x.data_ptr(), m, w.k, w.codes.data_ptr(), w.scale.data_ptr(), w.offset.data_ptr(),
            w.n, w.group, y.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
    return y
