#!/usr/bin/env bash
# tests/gpu/run.sh — run THERE (the GPU machine), from the repo root, after tests/gpu/prepare.sh staged
# .devcarry/ here and the device tool carried it. Writes its logs under $OUT:
#   env.log        nvidia-smi, the libraries the binary resolves, the staging manifest
# The binaries and libraries come xz-packed in .devcarry/payload.tar.xz and are unpacked into
# $MODU_DEVCARRY_DIR (default /tmp/modu-devcarry) first.
#   parity.log     backend_parity: registration, Philox/allocator/error checks, every op case CUDA vs CPU
#                  (f32 and bf16, forward and backward), the per-op CUDA coverage report
#   parity-attention-paths.log  the attention cases on the other attention paths (f32 on GEMM, bf16 on flash,
#                  bf16 on the fused tensor-core kernels: MODU_CUDA_ATTENTION=tc, core/cuda/attention_tc.cu, and
#                  bf16 on cuDNN's fused flash attention: MODU_CUDA_ATTENTION=cudnn, core/cuda/attention_cudnn.cpp)
#   memcheck.log   compute-sanitizer --tool memcheck over backend_parity --no-bf16 --no-error-tests (every
#                  case, f32 only; the deliberate-error checks excluded since the sanitizer reports them),
#                  with MODU_CUDA_NO_CACHING=1 so each tensor is its own cudaMalloc (overruns inside a cached
#                  block would be invisible to memcheck); then the attention cases alone under
#                  MODU_CUDA_ATTENTION=gemm (memcheck) and =tc (memcheck, and racecheck over attention_tiles_*)
#   bench.log      the benchmark hook: set MODU_GPU_BENCH to a command (run from the repo root with the same
#                  LD_LIBRARY_PATH and MODU_DEVCARRY_DIR pointing at the unpacked payload, e.g.
#                  MODU_GPU_BENCH='$MODU_DEVCARRY_DIR/bin/bench_core --json', with bench_core staged by
#                  EXTRA_TARGETS=bench_core tests/gpu/prepare.sh) and its output lands here; unset, skipped
#   summary.txt    the table printed at the end
# Each step runs under its own timeout and its failure never stops the others. The whole run is bounded
# by about 7 minutes (parity 150 s, memcheck 240 s, bench 60 s by default; override with PARITY_TIMEOUT,
# MEMCHECK_TIMEOUT, BENCH_TIMEOUT). Exit status: 0 when every step that ran passed.
#
# Usage: OUT=/some/dir bash tests/gpu/run.sh [--allow-no-gpu]
#   --allow-no-gpu  the CPU dry run: no GPU is no failure (the binary says "no CUDA device"; memcheck is skipped)
set -u
ROOT=$(pwd)
OUT=${OUT:-/tmp/modu-gpu-out}
mkdir -p "$OUT"
PAYLOAD=$ROOT/.devcarry/payload.tar.xz
CARRY=${MODU_DEVCARRY_DIR:-/tmp/modu-devcarry}  # where the payload is unpacked
export MODU_DEVCARRY_DIR=$CARRY
BIN=$CARRY/bin/backend_parity
ALLOW=""
for a in "$@"; do
  case "$a" in
    --allow-no-gpu) ALLOW=--allow-no-gpu ;;
    *) echo "usage: OUT=dir bash tests/gpu/run.sh [--allow-no-gpu]" >&2; exit 2 ;;
  esac
done

# ---- unpack the carried payload ------------------------------------------------------------------------------
rm -rf "$CARRY" && mkdir -p "$CARRY"
if [[ -f "$PAYLOAD" ]]; then
  if ! tar -C "$CARRY" -xJf "$PAYLOAD" 2>/dev/null; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PAYLOAD" "$CARRY" ||
      echo "run.sh: could not unpack $PAYLOAD" >&2
  fi
else
  echo "run.sh: $PAYLOAD missing: run tests/gpu/prepare.sh on the build machine and carry .devcarry" >&2
fi

declare -a NAMES=() RESULTS=() TIMES=()
record() { NAMES+=("$1"); RESULTS+=("$2"); TIMES+=("$3"); }
verdict() {  # exit status -> word
  case "$1" in
    0) echo pass ;; 124|137) echo timeout ;; 86) echo "memcheck errors" ;; 127) echo "not found" ;; *) echo "fail (rc $1)" ;;
  esac
}

# ---- libraries: carried ones first, then the GPU machine's CUDA 13 cuBLAS and NCCL -----------------------------
find_lib_dir() {  # prints the directory holding $1, searching the usual CUDA and PyTorch-wheel places
  local name=$1 d f
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/local/lib; do
    [[ -e "$d/$name" ]] && { echo "$d"; return 0; }
  done
  f=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')
  [[ -n "$f" ]] && { dirname "$f"; return 0; }
  for d in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) /opt/torch/.venv/lib/python3*/site-packages /usr/local/lib/python3*/dist-packages; do
    [[ -d "$d/nvidia" ]] || continue
    f=$(find "$d/nvidia" -name "$name" 2>/dev/null | head -1)
    [[ -n "$f" ]] && { dirname "$f"; return 0; }
  done
  return 1
}
LIBPATH=$CARRY/lib
for lib in libcublasLt.so.13 libcublas.so.13 libnccl.so.2; do
  if dir=$(find_lib_dir "$lib"); then
    case ":$LIBPATH:" in *":$dir:"*) ;; *) LIBPATH=$LIBPATH:$dir ;; esac
  else
    echo "run.sh: $lib not found on this machine; backend_parity cannot load" | tee -a "$OUT/env.log"
  fi
done
# cuDNN (MODU_CUDA_ATTENTION=cudnn dlopens libcudnn.so.9; nothing else needs it): PyTorch's wheel has one.
if dir=$(find_lib_dir libcudnn.so.9); then
  case ":$LIBPATH:" in *":$dir:"*) ;; *) LIBPATH=$LIBPATH:$dir ;; esac
  echo "run.sh: libcudnn.so.9 in $dir" >>"$OUT/env.log"
else
  echo "run.sh: libcudnn.so.9 not found on this machine; the cudnn attention path will say so" | tee -a "$OUT/env.log"
fi
export LD_LIBRARY_PATH=$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# The binary was built against this build machine's libstdc++; add the carried copy only if needed.
if [[ -x "$BIN" ]] && ldd "$BIN" 2>&1 | grep -qE "GLIBCXX|CXXABI|GCC_[0-9].*not found"; then
  export LD_LIBRARY_PATH=$CARRY/lib-fallback:$LD_LIBRARY_PATH
fi

# ---- env -------------------------------------------------------------------------------------------------------
t0=$(date +%s)
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), repo $ROOT"
  echo "== nvidia-smi"
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
  echo "== LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "== ldd backend_parity"
  if [[ -x "$BIN" ]]; then ldd "$BIN"; else echo "$BIN missing: run tests/gpu/prepare.sh on the build machine and carry .devcarry"; fi
  echo "== manifest"
  cat "$ROOT/.devcarry/manifest.txt" 2>/dev/null || echo "no manifest"
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"
if [[ -x "$BIN" ]] && ! ldd "$BIN" | grep -q "not found"; then env_rc=0; else env_rc=1; fi
record env "$(verdict $env_rc)" $(( $(date +%s) - t0 ))

# ---- parity ----------------------------------------------------------------------------------------------------
t0=$(date +%s)
set -o pipefail
timeout --kill-after=10 "${PARITY_TIMEOUT:-150}" "$BIN" $ALLOW 2>&1 | tee "$OUT/parity.log"
parity_rc=$?
set +o pipefail
record parity "$(verdict $parity_rc)" $(( $(date +%s) - t0 ))

# ---- attention cases again on the other CUDA attention paths (core/cuda/attention_gemm.cu, attention_tc.cu): the
# default run covered bf16 on the tensor-core GEMM path and f32 on the flash-style kernel; this covers f32 on
# GEMM, bf16 on flash and bf16 on the fused tensor-core kernels (tc; f32 there runs the flash kernel again) ----
t0=$(date +%s)
if grep -q "^no CUDA device" "$OUT/parity.log" 2>/dev/null; then
  record attention_paths skipped 0
else
set -o pipefail
( rc=0
  for path in gemm flash tc cudnn; do  # each path on its own: one failing never hides the next
    echo "== MODU_CUDA_ATTENTION=$path"
    if [[ $path == cudnn ]]; then  # the frontend's own log of the graphs it built, for a refusal's details
      export CUDNN_FRONTEND_LOG_INFO=1 CUDNN_FRONTEND_LOG_FILE="$OUT/cudnn-frontend.log"
    fi
    MODU_CUDA_ATTENTION=$path timeout --kill-after=10 60 "$BIN" $ALLOW --filter=attention --no-error-tests || rc=1
    unset CUDNN_FRONTEND_LOG_INFO CUDNN_FRONTEND_LOG_FILE
  done
  exit $rc ) 2>&1 | tee "$OUT/parity-attention-paths.log" | grep -E "^(== MODU|SUMMARY|cases:|FAIL)"
attn_rc=$?
set +o pipefail
record attention_paths "$(verdict $attn_rc)" $(( $(date +%s) - t0 ))
fi

# ---- the GPT recipe on the GPU: PyTorch fidelity (f32) and bit-identical resume ------------------------------
t0=$(date +%s)
if grep -q "^no CUDA device" "$OUT/parity.log" 2>/dev/null; then
  echo "no CUDA device: GPT checks skipped" >"$OUT/gpt.log"
  record gpt skipped 0
elif [[ -x "$CARRY/bin/gpt_fidelity" && -x "$CARRY/bin/gpt_train" ]]; then
  (
    export MODU_TEST_DEVICE=cuda MODU_GPT_FIXTURE_DIR=$ROOT/tests/fixtures MODU_TEST_BOOK=$CARRY/data/pg1661.txt
    rc=0
    for t in gpt_fidelity gpt_train gpt_autocast; do
      [[ -x "$CARRY/bin/$t" ]] || continue
      timeout --kill-after=10 "${GPT_TIMEOUT:-120}" "$CARRY/bin/$t" || rc=1
    done
    # bf16 autocast training on the two fused attention paths not yet default (tc, cudnn)
    if [[ -x "$CARRY/bin/gpt_autocast" ]]; then
      for path in tc cudnn; do
        echo "== gpt_autocast with MODU_CUDA_ATTENTION=$path"
        MODU_CUDA_ATTENTION=$path timeout --kill-after=10 "${GPT_TIMEOUT:-120}" "$CARRY/bin/gpt_autocast" || rc=1
      done
    fi
    exit $rc
  ) >"$OUT/gpt.log" 2>&1
  gpt_rc=$?
  grep -E "^\[ *(OK|FAILED|PASSED) |worst|\] (logits|loss) " "$OUT/gpt.log" | tail -n 24
  record gpt "$(verdict $gpt_rc)" $(( $(date +%s) - t0 ))
else
  record gpt "skipped (not staged)" 0
fi

# ---- benchmark hook --------------------------------------------------------------------------------------------
t0=$(date +%s)
if [[ -n "${MODU_GPU_BENCH:-}" ]]; then
  timeout --kill-after=10 "${BENCH_TIMEOUT:-60}" bash -c "$MODU_GPU_BENCH" >"$OUT/bench.log" 2>&1
  bench_rc=$?
  tail -n 20 "$OUT/bench.log"
  record bench "$(verdict $bench_rc)" $(( $(date +%s) - t0 ))
else
  record bench "skipped (MODU_GPU_BENCH unset)" 0
fi

# ---- memcheck --------------------------------------------------------------------------------------------------
t0=$(date +%s)
SAN=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$SAN" && -x "$c" ]] && SAN=$c
done
if [[ -z "$SAN" ]]; then
  echo "compute-sanitizer: not found on this machine" >"$OUT/memcheck.log"
  record memcheck skipped 0
elif grep -q "^no CUDA device" "$OUT/parity.log" 2>/dev/null; then
  echo "no CUDA device: memcheck skipped" >"$OUT/memcheck.log"
  record memcheck skipped 0
else
  MODU_CUDA_NO_CACHING=1 timeout --kill-after=10 "${MEMCHECK_TIMEOUT:-240}" "$SAN" --tool memcheck \
    --error-exitcode 86 --leak-check no --print-limit 100 "$BIN" $ALLOW --no-bf16 --no-error-tests >"$OUT/memcheck.log" 2>&1
  mc_rc=$?
  # f32 runs the flash-style attention above; the tensor-core GEMM path (core/cuda/attention_gemm.cu) is
  # checked here on its own, in f32 and bf16, and the fused tensor-core kernels (core/cuda/attention_tc.cu,
  # bf16 only) with memcheck and racecheck (shared-memory hazards of the cp.async double buffering).
  echo "== attention cases on the GEMM path (MODU_CUDA_ATTENTION=gemm)" >>"$OUT/memcheck.log"
  MODU_CUDA_ATTENTION=gemm MODU_CUDA_NO_CACHING=1 timeout --kill-after=10 "${MEMCHECK_TIMEOUT:-240}" "$SAN" \
    --tool memcheck --error-exitcode 86 --leak-check no --print-limit 100 "$BIN" $ALLOW --filter=attention \
    --no-error-tests >>"$OUT/memcheck.log" 2>&1
  mc2_rc=$?
  (( mc_rc == 0 )) && mc_rc=$mc2_rc
  echo "== attention cases on the fused tensor-core path (MODU_CUDA_ATTENTION=tc), memcheck" >>"$OUT/memcheck.log"
  MODU_CUDA_ATTENTION=tc MODU_CUDA_NO_CACHING=1 timeout --kill-after=10 "${MEMCHECK_TIMEOUT:-240}" "$SAN" \
    --tool memcheck --error-exitcode 86 --leak-check no --print-limit 100 "$BIN" $ALLOW --filter=attention \
    --no-error-tests >>"$OUT/memcheck.log" 2>&1
  mc3_rc=$?
  (( mc_rc == 0 )) && mc_rc=$mc3_rc
  echo "== attention cases on the fused tensor-core path (MODU_CUDA_ATTENTION=tc), racecheck" >>"$OUT/memcheck.log"
  MODU_CUDA_ATTENTION=tc timeout --kill-after=10 "${MEMCHECK_TIMEOUT:-240}" "$SAN" --tool racecheck \
    --error-exitcode 86 --print-limit 100 "$BIN" $ALLOW --filter=attention_tiles --no-error-tests \
    >>"$OUT/memcheck.log" 2>&1
  mc4_rc=$?
  (( mc_rc == 0 )) && mc_rc=$mc4_rc
  tail -n 15 "$OUT/memcheck.log"
  record memcheck "$(verdict $mc_rc)" $(( $(date +%s) - t0 ))
fi

# ---- summary ---------------------------------------------------------------------------------------------------
{
  echo "== summary ($OUT)"
  printf "%-10s %-32s %6s\n" step result seconds
  for i in "${!NAMES[@]}"; do printf "%-10s %-32s %6s\n" "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}"; done
  grep -E "^(SUMMARY|cases:|FAIL)" "$OUT/parity.log" 2>/dev/null | head -40
  grep -E "ERROR SUMMARY" "$OUT/memcheck.log" 2>/dev/null
} | tee "$OUT/summary.txt"
for r in "${RESULTS[@]}"; do
  case "$r" in pass|skipped*) ;; *) exit 1 ;; esac
done
exit 0
