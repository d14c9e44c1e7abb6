#!/usr/bin/env bash
# bench/recipes/learning_curve.sh BUILD_DIR [RECIPE] [PYTHON] — trains RECIPE (default recipes/gpt-tiny.toml)
# with modu, then the same model with PyTorch on the same token windows with the same hyperparameters
# (train_gpt_torch.py), and compares the validation-loss curves (target: within 2% at every evaluation).
# Needs the recipe's data prepared (scripts/train.sh does it). Outputs under runs/curve-{modu,torch}.
set -euo pipefail
BUILD=${1:?usage: learning_curve.sh BUILD_DIR [RECIPE] [PYTHON]}
RECIPE=${2:-recipes/gpt-tiny.toml}
PY=${3:-/work/venv-torch/bin/python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -rf runs/curve-modu runs/curve-torch
read -r TRAIN T SEED B STEPS < <("$PY" - "$RECIPE" <<'PY'
import sys, tomllib
r = tomllib.load(open(sys.argv[1], "rb"))
t = r["train"]
print(r["data"]["train"], t["seq_len"], t.get("seed", 1337), t["batch_size"], t["steps"])
PY
)
start=$(date +%s)
"$BUILD/launch/modu" train "$RECIPE" --set train.out_dir=runs/curve-modu --set train.resume=never \
  --set train.sample_every=0 --set train.checkpoint_every=0 | grep -E "^step [0-9]+/[0-9]+ \| val_loss|step .*(00|$STEPS)/"
echo "modu: $(( $(date +%s) - start )) s"
"$BUILD/bench/recipes/dump_batches" "$TRAIN" "$T" "$SEED" "$B" "$STEPS" runs/curve-batches.bin
start=$(date +%s)
OMP_WAIT_POLICY=PASSIVE "$PY" "$HERE/train_gpt_torch.py" "$RECIPE" runs/curve-batches.bin runs/curve-torch \
  --threads "$OMP_NUM_THREADS"
echo "torch: $(( $(date +%s) - start )) s"
"$PY" - <<'PY'
import json
def curve(path):
    return {j["step"]: j["val_loss"] for j in map(json.loads, open(path)) if j.get("val_loss") is not None}
a, b = curve("runs/curve-modu/metrics.jsonl"), curve("runs/curve-torch/metrics.jsonl")
worst = 0.0
print("%6s %10s %10s %8s" % ("step", "modu val", "torch val", "diff"))
for s in sorted(set(a) & set(b)):
    d = abs(a[s] - b[s]) / b[s]
    worst = max(worst, d)
    print("%6d %10.4f %10.4f %7.2f%%" % (s, a[s], b[s], 100 * d))
print("largest difference: %.2f%% (target <= 2%%)" % (100 * worst))
PY
