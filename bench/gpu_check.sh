#!/bin/bash
# The GPU checks, in one run of the device machine (its image has torch, triton, transformers and
# pytest, not our other dependencies): the Triton kernels against their twins on CUDA (the `gpu`
# tests of tests/kernels, whose conftest needs nothing else), then the quantized GEMM timings.
# Writes JSON and logs under $OUT; about 6 minutes on an H100 / H200.
#
#   device run: bash bench/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 240 python3 -m pytest -q -m gpu tests/kernels --confcutdir=tests/kernels -p no:cacheprovider \
    -o addopts="" 2>&1 | tee "$OUT/kernel_tests.log" | tail -5
timeout 240 python3 -m bench.quant_gemm --quick --only scaled --only block --json "$OUT/quant_gemm.json" \
    2>&1 | tee "$OUT/quant_gemm.log" | tail -40
