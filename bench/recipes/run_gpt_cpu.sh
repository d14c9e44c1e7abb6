#!/usr/bin/env bash
# bench/recipes/run_gpt_cpu.sh BUILD_DIR [PYTHON] — the GPT issue's CPU benchmarks, modu and PyTorch eager
# in the same run on the same threads (OMP_NUM_THREADS, default 2; PyTorch with OMP_WAIT_POLICY=PASSIVE,
# its better setting here per ARCHITECTURE §10), alternating runs, then the ratios:
#   A. 6 layers x 384 wide x 6 heads, T=256, B=8 (GPT-2 vocabulary): tokens/s, target modu/torch >= 1.0
#   B. GPT-2 124M, B=4, T=64: seconds per step, target <= 1.5 s
#   peak RSS of each run
set -u
BUILD=${1:?usage: run_gpt_cpu.sh BUILD_DIR [PYTHON]}
PY=${2:-/work/venv-torch/bin/python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUTJ=$(mktemp)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2; do
  "$BUILD/bench/recipes/bench_gpt_cpu" --steps 4 | sed 's/^{/{"case": "A", /' | tee -a "$OUTJ"
  OMP_WAIT_POLICY=PASSIVE "$PY" "$HERE/bench_gpt_cpu.py" --steps 4 --threads "$OMP_NUM_THREADS" | sed 's/^{/{"case": "A", /' | tee -a "$OUTJ"
  "$BUILD/bench/recipes/bench_gpt_cpu" --layers 12 --width 768 --heads 12 --T 64 --B 4 --steps 4 | sed 's/^{/{"case": "B", /' | tee -a "$OUTJ"
  OMP_WAIT_POLICY=PASSIVE "$PY" "$HERE/bench_gpt_cpu.py" --layers 12 --width 768 --heads 12 --T 64 --B 4 --steps 4 --threads "$OMP_NUM_THREADS" | sed 's/^{/{"case": "B", /' | tee -a "$OUTJ"
done
"$PY" - "$OUTJ" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def pick(case, impl, key):
    return [r[key] for r in rows if r["case"] == case and r["impl"] == impl]
for case, name in [("A", "6L x 384 x 6H, T=256, B=8"), ("B", "GPT-2 124M, T=64, B=4")]:
    m, t = pick(case, "modu", "tokens_per_s"), pick(case, "torch", "tokens_per_s")
    ms, ts = pick(case, "modu", "s_per_step"), pick(case, "torch", "s_per_step")
    mr, tr = pick(case, "modu", "peak_rss_mb"), pick(case, "torch", "peak_rss_mb")
    print("%s: modu %.0f tok/s (%.3f s/step), torch eager %.0f tok/s (%.3f s/step), ratio modu/torch %.2f; "
          "peak RSS modu %.0f MB, torch %.0f MB" % (name, max(m), min(ms), max(t), min(ts), max(m) / max(t),
                                                    max(mr), max(tr)))
PY
rm -f "$OUTJ"
