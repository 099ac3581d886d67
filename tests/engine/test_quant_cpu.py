"""Quantized Linear layers on the CPU run from weights prepared once at load (kernels.cpu_quant)
and compute what the per-call reference twins compute: the "dense" plan bit for bit, the
"native" plan (our AVX2 kernel on the codes) and the "packed" plan (PyTorch's int4 / int8 CPU
kernels) within float32 rounding; a quantized model's greedy tokens are the reference path's on
every plan."""

from pathlib import Path

import pytest
import torch

from engine import LLM, SamplingParams, UnsupportedModelError
from engine.layers.linear import Linear
from engine.layers.quant import ScaledMMMethod, Scheme, WNA16Method
from kernels import cpu_native, cpu_quant, reference

GREEDY = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
BATCHES = (1, 5, 32)

# The packed and native kernels sum K products in another order (blocked along K and N) than
# F.linear over the dequantized weight, and ATen's int4 kernel folds an integer zero point z into
# a float zero -z * scale (one more rounding per weight); the native kernel builds each weight as
# the reference does. Both are float32 rounding, ~K * 2^-24 relative to sum |x * w|: with
# K <= 512 and outputs of a few units, 2e-4 absolute / 1e-4 relative covers it with margin, while
# one wrong code (an error of one scale, >= 0.01 here) would fail it.
PACKED_TOL = dict(atol=2e-4, rtol=1e-4)
NATIVE = pytest.mark.skipif(cpu_native.unavailable() is not None, reason=f"{cpu_native.unavailable()}")


def _wna16_layer(bits: int, n: int, k: int, group: int | None, symmetric: bool, bias: bool = False) -> Linear:
    strategy = "group" if group else "channel"
    scheme = Scheme("pack-quantized", "int", bits, symmetric, strategy, group, None)
    layer = Linear(k, [n], bias, WNA16Method(scheme), torch.float32)
    g = torch.Generator().manual_seed(bits * 1000 + n + k + (group or 0) + symmetric)
    layer.weight_packed.copy_(torch.randint(-(2**31), 2**31 - 1, layer.weight_packed.shape, generator=g))
    layer.weight_scale.copy_(torch.rand(layer.weight_scale.shape, generator=g) * 0.05 + 0.01)
    if not symmetric:
        half = 1 << (bits - 1)
        layer.weight_zero_point.copy_(torch.randint(-half, half, layer.weight_zero_point.shape, generator=g))
    if bias:
        layer.bias.copy_(torch.randn(n, generator=g))
    return layer


def _scaled_layer(qdtype: torch.dtype, n: int, k: int, per_tensor: bool) -> Linear:
    weight_type = "int" if qdtype == torch.int8 else "float"
    scheme = Scheme(f"{weight_type}-quantized", weight_type, 8, True, "channel", None, weight_type)
    layer = Linear(k, [n], True, ScaledMMMethod(scheme), torch.float32)
    g = torch.Generator().manual_seed(n + k + per_tensor)
    if qdtype == torch.int8:
        layer.weight.copy_(torch.randint(-128, 128, (n, k), generator=g).to(torch.int8))
    else:
        layer.weight.copy_((torch.randn(n, k, generator=g) * 100).clamp(-448, 448).to(qdtype))
    scale = torch.rand(1 if per_tensor else n, 1, generator=g) * 0.01 + 0.001
    layer.weight_scale.copy_(scale.expand(n, 1))
    layer.bias.copy_(torch.randn(n, generator=g))
    return layer


def _prepare(layer: Linear, plan: str, monkeypatch) -> Linear:
    monkeypatch.setenv("HUB_CPU_QUANT", plan)
    layer.method.process_weights_after_loading(layer)
    return layer


def _reference(layer: Linear, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer.method, WNA16Method):
        m = layer.method
        out = reference.wna16_gemm(
            x, layer.weight_packed, layer.weight_scale, layer.weight_zero_point, m.bits, layer.group_size
        )
        return out if layer.bias is None else out + layer.bias
    q, scale = reference.quantize_per_token(x, layer.method.qdtype)
    return reference.scaled_mm(q, layer.weight, scale, layer.weight_scale, x.dtype, layer.bias)


WNA16_CASES = [
    # bits, N, K, group (None: channel), symmetric
    (4, 128, 256, 32, True),
    (4, 96, 512, 128, False),
    (4, 64, 192, 64, False),
    (4, 48, 256, None, True),  # channel: run as groups of 256 with the scale repeated
    (4, 160, 512, None, False),
    (8, 64, 256, None, True),
    (8, 96, 192, None, False),
    (8, 64, 256, 128, True),  # int8 in groups: no PyTorch CPU kernel, dequantized once
]


@pytest.mark.parametrize("bits, n, k, group, symmetric", WNA16_CASES)
def test_it_runs_pack_quantized_layers_as_the_reference_does(monkeypatch, bits, n, k, group, symmetric):
    dense = _prepare(_wna16_layer(bits, n, k, group, symmetric, bias=True), "dense", monkeypatch)
    # int8 in groups has no PyTorch CPU kernel (refused on the packed plan, tested below)
    plan = "dense" if bits == 8 and group else "packed"
    packed = _prepare(_wna16_layer(bits, n, k, group, symmetric, bias=True), plan, monkeypatch)
    assert packed.cpu_kind == ("int4" if bits == 4 else "int8" if not group else "dense")
    for m in BATCHES:
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
        want = _reference(dense, x)
        assert torch.equal(dense(x), want)  # the reference's own arithmetic, its weight built once
        torch.testing.assert_close(packed(x), want, **PACKED_TOL)
    # leading dims other than tokens pass through
    x3 = torch.randn(2, 3, k)
    torch.testing.assert_close(packed(x3), _reference(dense, x3.reshape(6, k)).view(2, 3, n), **PACKED_TOL)


# every row count the native kernel tiles differently: in registers 1, 2, 3 and 4 rows at a time
# (up to 8 rows), over a decoded block 6 rows at a time with every remainder, and from
# PREFILL_ROWS rows on the weight built in slabs for PyTorch's GEMM
NATIVE_BATCHES = (1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 40, 64, 150)


@NATIVE
@pytest.mark.parametrize("bits, n, k, group, symmetric", WNA16_CASES)
def test_it_runs_pack_quantized_layers_on_the_native_kernel_as_the_reference_does(
    monkeypatch, bits, n, k, group, symmetric
):
    native = _prepare(_wna16_layer(bits, n, k, group, symmetric, bias=True), "native", monkeypatch)
    assert native.cpu_kind == "native"
    for m in NATIVE_BATCHES:
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
        torch.testing.assert_close(native(x), _reference(native, x), **PACKED_TOL)
    x3 = torch.randn(2, 3, k)
    torch.testing.assert_close(native(x3), _reference(native, x3.reshape(6, k)).view(2, 3, n), **PACKED_TOL)


@NATIVE
@pytest.mark.parametrize("bits, n, k, group, symmetric", WNA16_CASES)
def test_it_builds_the_reference_weights_in_slabs(monkeypatch, bits, n, k, group, symmetric):
    layer = _prepare(_wna16_layer(bits, n, k, group, symmetric), "native", monkeypatch)
    want = reference.dequantize_packed(
        layer.weight_packed, layer.weight_scale, layer.weight_zero_point, bits, layer.group_size
    )
    assert torch.equal(cpu_native.dequantize(layer.cpu_native), want)
    # a prefill with slabs of 16 rows: every slab, the last one short
    monkeypatch.setattr(cpu_native, "PREFILL_WEIGHTS", 16 * k)
    x = torch.randn(cpu_native.PREFILL_ROWS + 3, k, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(layer(x), _reference(layer, x), **PACKED_TOL)


@NATIVE
def test_it_decodes_every_fp8_code_exactly():
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)
    values = codes.float()
    finite = ~values.isnan()  # 0x7f and 0xff: e4m3fn's NaNs, which no quantizer writes
    w = cpu_native.pack_scaled(codes.reshape(1, 256).expand(8, 256).contiguous(), torch.ones(8, 1))
    picked = cpu_native.mm(torch.eye(256)[finite], w)[:, 0]  # one code per row, subnormals included
    assert torch.equal(picked, values[finite])


@pytest.mark.parametrize("qdtype", [torch.int8, torch.float8_e4m3fn], ids=["w8a8", "fp8"])
@pytest.mark.parametrize("per_tensor", [False, True], ids=["channel", "tensor"])
def test_it_runs_w8a8_and_fp8_layers_as_the_reference_does(monkeypatch, qdtype, per_tensor):
    n, k = 96, 320
    dense = _prepare(_scaled_layer(qdtype, n, k, per_tensor), "dense", monkeypatch)
    packed = _prepare(_scaled_layer(qdtype, n, k, per_tensor), "packed", monkeypatch)
    # FP8 has no CPU math: it is dequantized once on every plan
    assert (dense.cpu_kind, packed.cpu_kind) == ("dense", "int_mm" if qdtype == torch.int8 else "dense")
    for m in BATCHES:
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)) * 3
        want = _reference(dense, x)
        assert torch.equal(dense(x), want)
        # torch._int_mm's int32 sum is exact; the reference sums dequantized products in float32
        torch.testing.assert_close(packed(x), want, **PACKED_TOL)


@NATIVE
@pytest.mark.parametrize("qdtype", [torch.int8, torch.float8_e4m3fn], ids=["w8a8", "fp8"])
@pytest.mark.parametrize("per_tensor", [False, True], ids=["channel", "tensor"])
def test_it_runs_w8a8_and_fp8_layers_on_the_native_kernel_as_the_reference_does(monkeypatch, qdtype, per_tensor):
    n, k = 96, 320
    native = _prepare(_scaled_layer(qdtype, n, k, per_tensor), "native", monkeypatch)
    assert native.cpu_kind == "native"
    for m in NATIVE_BATCHES:
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)) * 3
        torch.testing.assert_close(native(x), _reference(native, x), **PACKED_TOL)


@pytest.mark.parametrize("qdtype", [torch.int8, torch.float8_e4m3fn], ids=["int8", "fp8"])
def test_it_quantizes_per_token_as_the_reference_does(qdtype):
    x = torch.randn(33, 300, generator=torch.Generator().manual_seed(1)) * 4
    x[3] = 0  # an all-zero row takes scale eps
    x[4] = x[4].abs()  # rows of one sign
    x[5] = -x[5].abs()
    q, scale = cpu_quant.quantize_per_token(x, qdtype)
    want_q, want_scale = reference.quantize_per_token(x, qdtype)
    assert torch.equal(scale, want_scale) and torch.equal(q.view(torch.int8), want_q.view(torch.int8))


def test_it_refuses_packed_layers_the_kernels_cannot_take(monkeypatch):
    with pytest.raises(UnsupportedModelError, match="N % 16"):
        _prepare(_wna16_layer(4, 40, 256, 32, True), "packed", monkeypatch)
    with pytest.raises(UnsupportedModelError, match="per-channel scales"):
        _prepare(_wna16_layer(8, 64, 256, 128, True), "packed", monkeypatch)
    monkeypatch.setenv("HUB_CPU_QUANT", "fastest")
    with pytest.raises(ValueError, match="HUB_CPU_QUANT"):
        cpu_quant.cpu_plan()


@NATIVE
def test_it_runs_layers_the_native_kernel_cannot_take_dense(monkeypatch):
    # 36 output rows are not whole blocks of 8
    assert _prepare(_wna16_layer(4, 36, 256, 32, True), "native", monkeypatch).cpu_kind == "dense"
    assert _prepare(_scaled_layer(torch.int8, 36, 320, False), "native", monkeypatch).cpu_kind == "dense"


@pytest.mark.skipif(not cpu_native._cpu_has_features(), reason="this CPU lacks AVX2, FMA or F16C")
def test_it_builds_the_native_kernel_on_a_cpu_with_avx2():
    # the default plan everywhere CI and users run on x86: a broken build must not pass quietly
    assert cpu_native.unavailable() is None


@NATIVE
def test_it_takes_the_native_kernel_unless_told_otherwise(monkeypatch):
    # the native kernel reads the quantized codes: faster than the float32 base model
    # (bench/cpu_quant.py), where the dense plan is at best as fast as it
    monkeypatch.delenv("HUB_CPU_QUANT", raising=False)
    assert cpu_quant.cpu_plan() == "native"
    layer = _wna16_layer(4, 64, 256, 32, True)
    layer.method.process_weights_after_loading(layer)
    assert layer.cpu_kind == "native"


def test_it_dequantizes_once_where_the_native_kernel_cannot_be_built(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("HUB_KERNEL_CACHE", str(tmp_path / "cache"))  # nothing built there yet
    cpu_native.library.cache_clear()
    try:
        assert "C compiler" in cpu_native.unavailable() or "AVX2" in cpu_native.unavailable()
        monkeypatch.delenv("HUB_CPU_QUANT", raising=False)
        assert cpu_quant.cpu_plan() == "dense"
        monkeypatch.setenv("HUB_CPU_QUANT", "native")
        with pytest.raises(ValueError, match="HUB_CPU_QUANT=native: .*"):
            cpu_quant.cpu_plan()
    finally:
        cpu_native.library.cache_clear()


def test_it_says_why_when_the_kernel_cache_cannot_be_written(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("HUB_KERNEL_CACHE", str(blocked / "cache"))  # under a file: no folder there
    cpu_native.library.cache_clear()
    try:
        why = cpu_native.unavailable()
        assert why is not None and ("could not be built" in why or "AVX2" in why)
    finally:
        cpu_native.library.cache_clear()


# --- a small quantized model, end to end -------------------------------------------------------

W4_ASYM = "num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 32"
W8_CHANNEL = "num_bits: 8, type: int, symmetric: true, strategy: channel"
A8_TOKEN = "{num_bits: 8, type: int, symmetric: true, strategy: token, dynamic: true}"


def _rtn(weights: str, activations: str = "null") -> str:
    return (
        "default_stage:\n  default_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n"
        f"      config_groups: {{group_0: {{targets: [Linear], weights: {{{weights}}}, input_activations: {activations}}}}}\n"
    )


RECIPES = {
    "w4a16": "w4a16",  # symmetric, group 32 on the tiny widths
    "w4a16-asym": _rtn(W4_ASYM),
    "w8a16": "w8a16",  # int8 in groups: dense plan only
    "w8a16-channel": _rtn(W8_CHANNEL),
    "w8a8-int8": _rtn(W8_CHANNEL, A8_TOKEN),
    "fp8-dynamic": "fp8-dynamic",
}


PACKED_KINDS = {
    "w4a16": {"int4"},
    "w4a16-asym": {"int4"},
    "w8a16": None,  # groups: refused on the packed plan
    "w8a16-channel": {"int8"},
    "w8a8-int8": {"int_mm"},
    "fp8-dynamic": {"dense"},  # no CPU FP8 math: dequantized once on every plan
}


@pytest.fixture(scope="module")
def compressed(make_checkpoint, tmp_path_factory):
    from compress import compress

    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp("quant-cpu") / name
            compress(make_checkpoint("llama"), RECIPES[name], out, device="cpu")
            made[name] = out
        return made[name]

    return make


@pytest.mark.parametrize("name", list(RECIPES))
def test_it_generates_the_reference_paths_tokens(compressed, monkeypatch, name):
    path = compressed(name)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 128, (n,), generator=g).tolist() for n in (1, 7, 30)]
    tokens, kinds = {}, {}
    native = cpu_native.unavailable() is None
    for plan in ("reference", "dense", "packed", *(["native"] if native else [])):
        monkeypatch.setenv("HUB_CPU_QUANT", plan)
        if PACKED_KINDS[name] is None and plan == "packed":
            with pytest.raises(UnsupportedModelError, match="per-channel scales"):
                LLM(path, dtype="float32", device="cpu", num_kv_blocks=32)
            continue
        llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=32)
        kinds[plan] = {m.cpu_kind for m in llm.model.modules() if hasattr(m, "cpu_kind")}
        tokens[plan] = [out.token_ids for out in llm.generate(prompts, GREEDY)]
    assert kinds["reference"] == {None} and kinds["dense"] == {"dense"}
    assert kinds.get("packed") == PACKED_KINDS[name]
    assert kinds.get("native", {"native"}) == {"native"}
    assert tokens["dense"] == tokens["reference"]
    assert tokens.get("packed", tokens["reference"]) == tokens["reference"]
    assert tokens.get("native", tokens["reference"]) == tokens["reference"]


@NATIVE
@pytest.mark.parametrize("qdtype", [torch.int8, torch.float8_e4m3fn], ids=["int8", "fp8"])
def test_it_quantizes_activations_in_the_native_kernel_as_the_reference_does(qdtype):
    g = torch.Generator().manual_seed(2)
    # K = 300: a tail past the last 8 columns; magnitudes from 1e-6 to 10 hit e4m3's subnormals
    x = torch.randn(9, 300, generator=g) * torch.logspace(-6, 1, 300)
    x[3] = 0  # an all-zero row takes scale eps
    x[4] = x[4].abs()
    x[5] = -x[5].abs()
    x[6, ::2] = -x[6, ::2].abs().max()
    # a row whose scale is 1, with values halfway between two int8 or two e4m3 codes (normal and
    # subnormal): ties go to the even code
    half_range = 448.0 if qdtype == torch.float8_e4m3fn else 127.5
    ties = [half_range, 0.5, 1.5, 2.5, -2.5, 126.5, 1.0625, 1.1875, -1.0625, 17.0, 19.0, 2**-10, 3 * 2**-10, -(2**-10)]
    x[7] = 0
    x[7, : len(ties)] = torch.tensor(ties)
    q, scale = reference.quantize_per_token(x, qdtype)
    assert torch.equal(cpu_native.fake_quantize(x, qdtype), q.float() * scale)
