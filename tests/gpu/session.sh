#!/usr/bin/env bash
# tests/gpu/session.sh — the whole GPU session in one command, run THERE (the GPU machine) from the repo root
# after `EXTRA_TARGETS="gpt_fidelity gpt_train gpt_autocast bench_gpt2 bench_kernels" bash tests/gpu/prepare.sh`
# here and a device run carrying [".devcarry"]:  OUT=$OUT bash tests/gpu/session.sh
# It is tests/gpu/run.sh (parity on every attention path, GPT fidelity/resume/autocast, memcheck) with the
# benchmark hook set to: GPT-2 124M against PyTorch (default attention path), modu's autocast step alone on
# the cuDNN and the fused tensor-core attention paths (each with its per-op profile), the bf16 comparison again
# at a larger micro-batch (GPT2_BIG_BATCH, default 32) on the cuDNN path (valid only where the parity and
# gpt_autocast runs above passed on cudnn), then the per-kernel harness. Timeouts fit the device tool's 600 s per
# command; override any of them from the environment.
set -u
export PARITY_TIMEOUT=${PARITY_TIMEOUT:-110} GPT_TIMEOUT=${GPT_TIMEOUT:-90} BENCH_TIMEOUT=${BENCH_TIMEOUT:-360}
export MEMCHECK_TIMEOUT=${MEMCHECK_TIMEOUT:-90}
B=${GPT2_BATCH:-8}
BIG=${GPT2_BIG_BATCH:-32}
export MODU_GPU_BENCH="bash bench/gpu/run_gpt2.sh \$MODU_DEVCARRY_DIR/bin/bench_gpt2 $B;
  MODU_ONLY=1 MODU_CUDA_ATTENTION=cudnn bash bench/gpu/run_gpt2.sh \$MODU_DEVCARRY_DIR/bin/bench_gpt2 $B;
  MODU_ONLY=1 MODU_CUDA_ATTENTION=tc bash bench/gpu/run_gpt2.sh \$MODU_DEVCARRY_DIR/bin/bench_gpt2 $B;
  BF16_ONLY=1 MODU_CUDA_ATTENTION=cudnn bash bench/gpu/run_gpt2.sh \$MODU_DEVCARRY_DIR/bin/bench_gpt2 $BIG;
  bash bench/gpu/run_kernels.sh \$MODU_DEVCARRY_DIR/bin/bench_kernels"
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
