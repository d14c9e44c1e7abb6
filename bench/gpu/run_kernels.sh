#!/usr/bin/env bash
# bench/gpu/run_kernels.sh BENCH_KERNELS_BINARY — the per-kernel harness once per attention variant
# (MODU_CUDA_ATTENTION=flash, gemm, tc, then cudnn), then every other case once; JSON lines on stdout.
set -u
BIN=${1:?usage: run_kernels.sh BENCH_KERNELS_BINARY}
MODU_CUDA_ATTENTION=flash "$BIN" --only attention
MODU_CUDA_ATTENTION=gemm "$BIN" --only attention
MODU_CUDA_ATTENTION=tc "$BIN" --only attention
MODU_CUDA_ATTENTION=cudnn "$BIN" --only attention
for c in layer_norm gelu_tanh linear_c_fc cross_entropy adamw; do "$BIN" --only "$c"; done
