#!/usr/bin/env bash
# bench/core/run_dispatch.sh — the dispatch benchmark in one run: modu_bench_dispatch (C++) and
# bench_dispatch.py (PyTorch eager) in alternating rounds, torch both with OMP_WAIT_POLICY=PASSIVE
# (ARCHITECTURE.md §10) and with the variable unset, same thread count everywhere; then the
# side-by-side report (modu ns, torch ns per setting, ratio to the faster setting, heap allocations).
#
# Usage: bench/core/run_dispatch.sh [BUILD_DIR | PATH/TO/modu_bench_dispatch]   (default: build-bench)
# Environment: MODU_TORCH_PYTHON (default /work/venv-torch/bin/python), THREADS (default: nproc),
#   ROUNDS (3), REPS (11 per round), MIN_TIME (0.03 s per repeat), KEEP_DIR (keep the JSON/text there).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
arg=${1:-$repo/build-bench}
if [ -d "$arg" ]; then bin=$arg/bench/core/modu_bench_dispatch; else bin=$arg; fi
if [ ! -x "$bin" ]; then
  echo "run_dispatch.sh: no modu_bench_dispatch at $bin (build it: ninja -C BUILD_DIR modu_bench_dispatch)" >&2
  exit 2
fi
py=${MODU_TORCH_PYTHON:-/work/venv-torch/bin/python}
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "run_dispatch.sh: $py cannot import torch; set MODU_TORCH_PYTHON to a Python with PyTorch" >&2
  exit 2
fi
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
reps=${REPS:-11}
min_time=${MIN_TIME:-0.03}
if [ -n "${KEEP_DIR:-}" ]; then
  out=$KEEP_DIR
  mkdir -p "$out"
  rm -f "$out"/modu_*.json "$out"/torch_*.json
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

modu_wp=${OMP_WAIT_POLICY:-unset}
echo "dispatch benchmark: $rounds round(s), threads $threads, modu OMP_WAIT_POLICY=$modu_wp;" \
     "torch OMP_WAIT_POLICY=PASSIVE and unset; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq 1 "$rounds"); do
  echo "  round $r/$rounds: modu" >&2
  OMP_NUM_THREADS=$threads "$bin" --threads "$threads" --reps "$reps" --min-time "$min_time" \
    --json "$out/modu_$r.json" > "$out/modu_$r.txt"
  echo "  round $r/$rounds: torch, OMP_WAIT_POLICY=PASSIVE" >&2
  OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE "$py" "$here/bench_dispatch.py" --threads "$threads" \
    --reps "$reps" --min-time "$min_time" --json "$out/torch_passive_$r.json" > "$out/torch_passive_$r.txt"
  echo "  round $r/$rounds: torch, OMP_WAIT_POLICY unset" >&2
  env -u OMP_WAIT_POLICY OMP_NUM_THREADS="$threads" "$py" "$here/bench_dispatch.py" --threads "$threads" \
    --reps "$reps" --min-time "$min_time" --json "$out/torch_default_$r.json" > "$out/torch_default_$r.txt"
done
echo >&2
"$py" "$here/bench_dispatch.py" --report "$out"/modu_*.json "$out"/torch_*.json
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
