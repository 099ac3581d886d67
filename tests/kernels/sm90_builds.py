"""Builds every Triton kernel for an H100 (sm_90) at the launch shapes the GPU path uses, with no
GPU: Triton compiles for a named target and ships ptxas. Run as a program (tests/kernels/
test_sm90_build.py does) in a process where TRITON_INTERPRET is unset, since under the
interpreter `@triton.jit` gives functions that cannot be compiled. The shapes are
Llama-3.1-8B's in bf16. Prints one line per group; exits 1 if any failed."""

import sys
import traceback

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels import activation, attention, cache, gemm_scaled, gemm_wna16, moe, norm, rotary

FLOAT_SCALARS = {"eps", "qk_scale", "softcap_log2", "k_scale", "v_scale"}
INDEX_POINTERS = {"block_tables_ptr": "*i32", "seq_lens_ptr": "*i32", "query_start_loc_ptr": "*i32",
                  "slot_mapping_ptr": "*i64", "positions_ptr": "*i64"}  # fmt: skip


def build(kernel, constants: dict, pointers: dict[str, str] | None = None, num_warps: int = 4, num_stages: int = 3):
    """Compile for sm_90: pointers are bf16 unless named (or an index array), scalars i32."""
    signature = {}
    for param in kernel.params:
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = (pointers or {}).get(name) or INDEX_POINTERS.get(name, "*bf16")
        else:
            signature[name] = "fp32" if name in FLOAT_SCALARS else "i32"
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants)
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": num_stages}
    )
    assert compiled.asm["cubin"]
    return compiled


SEGMENTS = {"seg_acc_ptr": "*fp32", "seg_max_ptr": "*fp32", "seg_sum_ptr": "*fp32"}
FP8_CACHE = {"k_cache_ptr": "*fp8e4nv", "v_cache_ptr": "*fp8e4nv"}


def paged_attention() -> None:
    # decode split over segments; prefill; each with full attention, and windowed and soft-capped
    # (Gemma 2); and both over an FP8 cache
    for block_m, tile_n, segments, gemma2, fp8 in (
        (16, 64, 4, False, False),
        (64, 32, 1, False, False),
        (16, 64, 4, True, False),
        (64, 32, 1, True, False),
        (16, 64, 4, False, True),
        (64, 32, 1, False, True),
    ):
        constants = dict(HEAD_DIM=128, HEAD_DIM_P=128, GROUP=4, BLOCK_Q=block_m // 4, BLOCK_M=block_m, BLOCK_SIZE=16,
                         TILE_N=tile_n, NUM_SEGMENTS=segments,
                         MIN_SEGMENT_TILES=triton.cdiv(attention.MIN_SEGMENT_KEYS, tile_n), SLIDING=gemma2,
                         SOFTCAP=gemma2, FP8_KV=fp8, UPCAST=False, DOT_PRECISION="tf32")  # fmt: skip
        build(attention._paged_attention_kernel, constants, {**SEGMENTS, **(FP8_CACHE if fp8 else {})})
        if segments > 1 and not gemma2:
            build(
                attention._reduce_segments_kernel, dict(HEAD_DIM=128, HEAD_DIM_P=128, NUM_SEGMENTS=segments), SEGMENTS
            )


def cache_and_elementwise() -> None:
    for fp8 in (False, True):
        constants = dict(HEAD_DIM=128, BLOCK_SIZE=16, BLOCK_T=1, BLOCK_H=8, BLOCK_D=128, FP8=fp8, FP8_MAX=448.0,
                         INTERPRET=False)  # fmt: skip
        build(cache._store_kvcache_kernel, constants, FP8_CACHE if fp8 else None)
    build(
        rotary._rotary_kernel, dict(HALF=64, BLOCK_T=1, BLOCK_HQ=32, BLOCK_HKV=8, BLOCK_D=64), {"cos_sin_ptr": "*fp32"}
    )
    # each alone, or quantizing its output for an int8 / FP8 layer
    for quant, out in ((None, "*bf16"), (torch.int8, "*i8"), (torch.float8_e4m3fn, "*fp8e4nv")):
        constants = dict(QUANT=quant is not None, **gemm_scaled.quant_constants(quant))
        pointers = {"out_ptr": out, "scale_ptr": "*fp32"}
        for residual in (False, True):
            build(
                norm._rms_norm_kernel,
                dict(HAS_RESIDUAL=residual, BLOCK_M=1, BLOCK_N=4096, **constants),
                pointers,
                num_warps=8,
            )
        block_n, warps = (16384, 16) if quant is not None else (1024, 4)
        build(activation._silu_and_mul_kernel, dict(BLOCK_M=1, BLOCK_N=block_n, **constants), pointers, num_warps=warps)
    # Gemma's norms hold (1 + weight) in float32
    constants = dict(HAS_RESIDUAL=True, QUANT=False, BLOCK_M=1, BLOCK_N=4096, **gemm_scaled.quant_constants(None))
    build(norm._rms_norm_kernel, constants, {"weight_ptr": "*fp32", "scale_ptr": "*fp32"}, num_warps=8)


def scaled_gemm() -> None:
    for fp8 in (False, True):
        scaled_gemm_for(fp8)


def scaled_gemm_for(fp8: bool) -> None:
    q = "*fp8e4nv" if fp8 else "*i8"
    constants = gemm_scaled.quant_constants(torch.float8_e4m3fn if fp8 else torch.int8)
    for one_pass, block_k in ((True, 4096), (False, 16384)):
        build(gemm_scaled._quantize_per_token_kernel, dict(ONE_PASS=one_pass, BLOCK_M=1, BLOCK_K=block_k, **constants),
              {"q_ptr": q, "s_ptr": "*fp32"}, num_warps=8)  # fmt: skip
    build(gemm_scaled._scaled_mm_kernel,
          dict(SA_PER_ROW=True, SB_PER_ROW=True, HAS_BIAS=False, INT=not fp8, BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, GROUP_M=8),
          {"a_ptr": q, "b_ptr": q, "sa_ptr": "*fp32", "sb_ptr": "*fp32"}, num_warps=8)  # fmt: skip
    if fp8:  # FP8 block weights: a scale per group of 128 along K on both sides
        for block_m in (16, 64):
            build(gemm_scaled._block_scaled_mm_kernel,
                  dict(GROUP=128, HAS_BIAS=False, BLOCK_M=block_m, BLOCK_N=128, BLOCK_K=128, GROUP_M=8),
                  {"a_ptr": q, "b_ptr": q, "sa_ptr": "*fp32", "sb_ptr": "*fp32"}, num_stages=4)  # fmt: skip


def w4a16_paths() -> None:
    gemm_wna16.num_sms = lambda device_index: 132  # an H100's, for the split-K counts
    for case in (
        (1, 128, 4, False),
        (4, 128, 4, True),
        (2, 128, 8, False),
        (16, 128, 4, False),
        (16, 32, 4, True),
        (16, 128, 8, True),
    ):
        w4a16_path(*case)


def w4a16_path(m: int, group_size: int, bits: int, zero_points: bool) -> None:
    build_wna16(gemm_wna16.default_config(m, 4096, 4096, group_size, bits, torch.device("cuda")), bits, zero_points)


def build_wna16(cfg: "gemm_wna16.Config", bits: int, zero_points: bool):
    """A fused W4A16 path at its launch shape, bf16 activations, split-K partials in fp32."""
    kernel, variant = gemm_wna16.kernel_for(cfg)
    constants = dict(BITS=bits, HAS_ZP=zero_points, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
                     UPCAST=False, IEEE=False, **variant)  # fmt: skip
    return build(
        kernel, constants, {"w_ptr": "*i32", "z_ptr": "*i8", "out_ptr": "*fp32"}, cfg.num_warps, cfg.num_stages
    )


def w4a16_helpers() -> None:
    for zero_points in (False, True):
        build(gemm_wna16._dequantize_kernel, dict(BITS=4, HAS_ZP=zero_points, BLOCK_N=32, BLOCK_K=256),
              {"w_ptr": "*i32", "z_ptr": "*i8"})  # fmt: skip
    build(gemm_wna16._sum_splits_kernel, dict(BLOCK=1024), {"part_ptr": "*fp32"})


def moe_gemms() -> None:
    """Both grouped GEMMs of the fused MoE at Qwen3-30B-A3B's widths, for decode and prefill."""
    pointers = {"weights_ptr": "*fp32", "sorted_ids_ptr": "*i32", "block_experts_ptr": "*i32", "num_padded_ptr": "*i32"}
    for pairs in (8, 8 * 2048):
        cfg = moe.default_config(pairs, 128)
        for gated in (True, False):
            constants = dict(ROWS_PER_A=8 if gated else 1, GATED=gated, ROUTED_WEIGHT=not gated, UPCAST=False,
                             IEEE=False, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
                             GROUP_M=cfg.group_m)  # fmt: skip
            out = {"out_ptr": "*bf16" if gated else "*fp32"}
            build(moe._moe_gemm_kernel, constants, {**pointers, **out}, cfg.num_warps, cfg.num_stages)


def main() -> int:
    failed = 0
    for group in (paged_attention, cache_and_elementwise, scaled_gemm, w4a16_paths, w4a16_helpers, moe_gemms):
        try:
            group()
            print(f"ok {group.__name__}")
        except Exception:
            failed += 1
            print(f"FAILED {group.__name__}:\n{traceback.format_exc()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
