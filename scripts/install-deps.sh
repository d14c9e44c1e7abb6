#!/usr/bin/env bash
# Installs every system package modu builds, tests and trains with, from Debian's archive.
# Idempotent: packages already present are skipped, so the README, CI and developers all call it.
# Usage: scripts/install-deps.sh            (needs root, or sudo on PATH)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # numerics: OpenBLAS built against OpenMP, so BLAS and modu's kernels share one thread pool
  libopenblas-openmp-dev
  # f32 GEMM on the CPU (core/cpu/blas.cpp): oneDNN, also on OpenMP
  libdnnl-dev
  # parallel: Open MPI (collectives on CPU, launcher, NCCL bootstrap)
  openmpi-bin libopenmpi-dev
  # checkpoints, ONNX export
  libhdf5-dev protobuf-compiler libprotobuf-dev libxxhash-dev
  # recipes, metrics, command line
  libtomlplusplus-dev nlohmann-json3-dev libcli11-dev
  # tests
  googletest libgtest-dev libgmock-dev
  # bundled real data (public-domain books): Jane Austen, Moby-Dick, Sherlock Holmes / Tom Sawyer
  r-cran-janeaustenr r-cran-tokenizers golang-github-pierrec-lz4-dev
  # python for the data preparation helpers and fixture tooling
  python3 python3-venv
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
