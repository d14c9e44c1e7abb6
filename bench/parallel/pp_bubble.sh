#!/usr/bin/env bash
# bench/parallel/pp_bubble.sh [BUILD_DIR]: the pipeline bubble of `modu train` under mpirun, printed (not
# asserted) against the formulas (p-1)/m (1F1B) and (p-1)/(v m) (interleaved 1F1B); goal within 5%.
#  - measured: per rank, the seconds its stage spent waiting in receives during forward-backward (idle)
#    over the rest of forward-backward (busy), averaged over the ranks and over steps 2..N (the metrics'
#    pp_wait_s and pp_forward_backward_s; step 1 warms up);
# (parallel/schedule.h's simulator gives exactly the formulas with uniform costs: tests/parallel/test_schedule.cpp.)
# The measurement means something only with a core per rank (each stage computes while the others wait): on
# fewer cores the ranks time-share and waits include other ranks' compute. The wait also counts message
# time, which the formulas leave out.
# Model: recipes/gpt-tiny.toml at 8 layers x WIDTH (default 128) wide, SEQ (default 32) positions, one sequence per
# micro-batch. CONFIGS (default: all six below) picks runs as "p schedule v m;...". On 2 cores only p = 2 means
# something: e.g. WIDTH=384 SEQ=128 CONFIGS="2 1f1b 1 4;2 1f1b 1 8;2 interleaved 2 4;2 interleaved 2 8".
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$REPO/build}"
MODU="$BUILD/launch/modu"
[ -x "$MODU" ] || { echo "pp_bubble.sh: $MODU not built (cmake --build $BUILD --target modu)" >&2; exit 1; }
BOOK="${MODU_TEST_BOOK:-/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
head -c 200000 "$BOOK" > "$WORK/book.txt"
"$MODU" prepare tokenizer -q --vocab-size 384 --input "$WORK/book.txt" --out "$WORK/tok" >/dev/null
"$MODU" prepare text -q --input "$WORK/book.txt" --out "$WORK/data" --tokenizer "$WORK/tok" >/dev/null
WIDTH="${WIDTH:-128}"
SEQ="${SEQ:-32}"
SETS=(--set model.vocab_size=384 --set model.n_layer=8 --set model.n_head=4 --set "model.n_embd=$WIDTH"
      --set "model.block_size=$SEQ" --set "train.seq_len=$SEQ" --set train.micro_batch_size=1
      --set train.steps=6 --set train.log_every=1 --set train.eval_every=0 --set train.sample_every=0
      --set train.checkpoint_every=0 --set train.threads=1 --set "data.train=$WORK/data/train"
      --set "data.val=" --set "data.tokenizer=$WORK/tok")
echo "cores: $(nproc); ranks per run: p (measurements need p cores)"
printf '%-5s %-12s %-3s %-4s %-10s %-10s %-8s\n' p schedule v m measured formula ratio
IFS=';' read -r -a RUNS <<<"${CONFIGS:-2 1f1b 1 8;4 1f1b 1 8;4 1f1b 1 16;2 interleaved 2 8;4 interleaved 2 8;4 interleaved 2 16}"
echo "model: 8 layers, width $WIDTH, $SEQ positions, one sequence per micro-batch"
for cfg in "${RUNS[@]}"; do
  read -r p sched v m <<<"$cfg"
  out="$WORK/pp${p}_${sched}_v${v}_m${m}"
  "$REPO/tests/parallel/mpirun.sh" "$p" "$MODU" train "$REPO/recipes/gpt-tiny.toml" "${SETS[@]}" \
    --set parallel.pp="$p" --set parallel.schedule="$sched" --set parallel.virtual_stages="$v" \
    --set train.batch_size="$m" --set "train.out_dir=$out" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
  python3 - "$out" "$p" "$sched" "$v" "$m" <<'PY'
import json, sys
out, p, sched, v, m = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
recs = [json.loads(l) for l in open(out + "/metrics.jsonl") if '"pp_wait_s"' in l][1:]
wait = sum(r["pp_wait_s"] for r in recs)
busy = sum(r["pp_forward_backward_s"] for r in recs) - wait
measured = wait / busy
formula = (p - 1) / (v * m)
print(f"{p:<5} {sched:<12} {v:<3} {m:<4} {measured:<10.4f} {formula:<10.4f} {measured / formula:.3f}")
PY
done
