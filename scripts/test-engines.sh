#!/usr/bin/env bash
# Every engine comparison (CTest label "engines"), including the ones too heavy for CI: transformers
# (safetensors export and `modu import hf`; torch + transformers, ~4.9 GB venv), plus whatever GGUF /
# ONNX engine tests are registered. Configures its own build folder with -DMODU_TEST_ENGINES=ON (so the
# plain build that scripts/test.sh uses never registers the heavy tests), builds, and runs `ctest -L engines`.
# The Python venvs are cached (.venv-<set>, scripts/python-env.sh): the first run downloads them.
# Usage: scripts/test-engines.sh [extra ctest arguments, e.g. -R hf]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
JOBS="${MODU_JOBS:-$(nproc)}"
BUILD="${MODU_ENGINES_BUILD:-$REPO/build-engines}"

step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "system packages"
scripts/install-deps.sh

step "Release build with the engine tests ($BUILD)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMODU_CUDA=OFF -DMODU_BUILD_BENCH=OFF \
  -DMODU_TEST_ENGINES=ON
cmake --build "$BUILD" -j "$JOBS"

step "engine tests (label engines)"
ctest --test-dir "$BUILD" --output-on-failure -L engines --timeout 3600 "$@"

step "all engine tests passed"
