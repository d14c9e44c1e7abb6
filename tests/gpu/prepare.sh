#!/usr/bin/env bash
# tests/gpu/prepare.sh — run HERE (the build machine, no GPU needed): builds build-gpu/ with the CUDA backend
# for sm_80 and sm_90 and stages what the GPU checks need into .devcarry/ (git-ignored), so that folder alone
# can be carried to a GPU machine that has no OpenBLAS, MPI or GoogleTest:
#   .devcarry/payload.tar.xz   bin/backend_parity (+ EXTRA_TARGETS), lib/ (libmodu_*.so, libcudart, OpenBLAS
#                              and its Fortran/OpenMP runtime), lib-fallback/ (this machine's libstdc++ and
#                              libgcc_s, used by run.sh only when the GPU machine's own are too old);
#                              xz-compressed because uncompressed it is ~85 MiB, over the device tool's
#                              64 MiB carry limit (compressed ~11 MiB). run.sh unpacks it into /tmp.
#   .devcarry/manifest.txt     what was staged, from where, and the build's git revision
# cuBLAS / cuBLASLt (>500 MB) and NCCL (~220 MB; modu_parallel links it) are NOT carried: run.sh finds the GPU
# machine's CUDA 13 copies (toolkit, or the nvidia-cublas / nvidia-nccl wheels beside PyTorch). glibc and the
# CUDA driver always come from the GPU machine.
#
# Usage: tests/gpu/prepare.sh   env: BUILD (build dir, default build-gpu), JOBS (ninja -j, default 2),
#                               EXTRA_TARGETS (more executables to build and stage into bin/, e.g.
#                               benchmarks for run.sh's bench hook; their libraries are staged too)
# Then:  device run with carry [".devcarry"] and command  "OUT=$OUT bash tests/gpu/run.sh"
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
CARRY=$ROOT/.devcarry
JOBS=${JOBS:-2}

# cuDNN's fused attention path (core/cuda/attention_cudnn.cpp) compiles only with the cuDNN frontend's headers.
"$ROOT/scripts/fetch-cudnn-frontend.sh"
# Host code for a generic modern x86-64 with FMA (the GPU machine's CPU is not this one): AVX2/FMA keep the
# CPU reference's floating-point contraction identical to what the parity checks expect.
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMODU_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80;90" -DMODU_NATIVE=OFF -DCMAKE_CXX_FLAGS="-march=x86-64-v3" >/dev/null
start=$(date +%s)
# shellcheck disable=SC2086
ninja -C "$BUILD" -j "$JOBS" backend_parity ${EXTRA_TARGETS:-}
echo "prepare: build took $(( $(date +%s) - start )) s"

BIN=$BUILD/tests/gpu/backend_parity
BINS=("$BIN")
for t in ${EXTRA_TARGETS:-}; do
  f=$(find "$BUILD" -path "$BUILD/devcarry-stage" -prune -o -type f -name "$t" -perm -u+x -print | head -1)
  [[ -n "$f" ]] || { echo "prepare: built target $t not found under $BUILD" >&2; exit 1; }
  BINS+=("$f")
done
STAGE=$BUILD/devcarry-stage
rm -rf "$CARRY" "$STAGE"
mkdir -p "$CARRY" "$STAGE/bin" "$STAGE/lib" "$STAGE/lib-fallback"
cp "${BINS[@]}" "$STAGE/bin/"
# Text for the training test (tests/recipes/test_train.cpp reads MODU_TEST_BOOK): the GPU machine has
# no Debian packages.
BOOK=/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt
if [[ -f "$BOOK" ]]; then mkdir -p "$STAGE/data" && cp "$BOOK" "$STAGE/data/"; fi
MANIFEST=$CARRY/manifest.txt
{
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) from $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "binaries: $(cd "$STAGE/bin" && echo *)"
} >"$MANIFEST"

# Every shared library the binaries resolve, except glibc's, the CUDA driver's and cuBLAS's.
ldd "${BINS[@]}" | awk '/=> \//{print $1, $3}' | sort -u | while read -r soname path; do
  case "$soname" in
    libc.so*|libm.so*|libmvec.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libutil.so*|libresolv.so*) continue ;;
    libcuda.so*|libnvidia*) continue ;;
    libcublas.so*|libcublasLt.so*|libnccl.so*) echo "not carried (found on the GPU machine): $soname" >>"$MANIFEST"; continue ;;
    libstdc++.so*|libgcc_s.so*) dest=$STAGE/lib-fallback ;;
    *) dest=$STAGE/lib ;;
  esac
  cp -L "$path" "$dest/$soname"
  echo "$soname <- $path" >>"$MANIFEST"
done
strip --strip-unneeded "$STAGE"/bin/* "$STAGE"/lib/*.so* 2>/dev/null || true

# Dry run of the staged binary here: without a GPU it must say so and pass with --allow-no-gpu.
LD_LIBRARY_PATH="$STAGE/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$STAGE/bin/backend_parity" --allow-no-gpu || { echo "prepare: the dry run failed" >&2; exit 1; }

tar -C "$STAGE" -cf - . | xz -T"$JOBS" -6 >"$CARRY/payload.tar.xz"
echo "staged: $(du -sk "$STAGE" | cut -f1) KiB uncompressed, payload $(( $(stat -c %s "$CARRY/payload.tar.xz") / 1024 )) KiB" >>"$MANIFEST"
cat "$MANIFEST"
size_kb=$(du -sk "$CARRY" | cut -f1)
if (( size_kb > 48 * 1024 )); then
  echo "prepare: WARNING: $CARRY is $(( size_kb / 1024 )) MiB; the device tool carries at most 64 MiB with the working tree" >&2
fi
echo "prepare: OK ($CARRY, $(( size_kb / 1024 )) MiB)"
