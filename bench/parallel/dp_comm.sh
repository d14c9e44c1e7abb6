#!/usr/bin/env bash
# bench/parallel/dp_comm.sh [BUILD_DIR]: data-parallel communication and ZeRO memory of `modu train`
# under mpirun, printed (not asserted) against the textbook figures:
#  - bytes sent per optimizer step by one rank (the communicator's own count) against the ring formulas
#    for S = 4 bytes x parameters: ZeRO-0 all-reduce 2(n-1)/n S; ZeRO-1 all-reduce + parameter all-gather
#    3(n-1)/n S; ZeRO-2 reduce-scatter + all-gather 2(n-1)/n S (plus 8-byte scalars);
#  - AdamW state bytes per rank against the unsharded 8 bytes x parameters (m and v in f32): goal 1/n.
# Model: recipes/gpt-tiny.toml shrunk to 4 layers x 64 wide on a 384-token BPE of a Gutenberg text.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$REPO/build}"
MODU="$BUILD/launch/modu"
[ -x "$MODU" ] || { echo "dp_comm.sh: $MODU not built (cmake --build $BUILD --target modu)" >&2; exit 1; }
BOOK="${MODU_TEST_BOOK:-/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
head -c 200000 "$BOOK" > "$WORK/book.txt"
"$MODU" prepare tokenizer -q --vocab-size 384 --input "$WORK/book.txt" --out "$WORK/tok" >/dev/null
"$MODU" prepare text -q --input "$WORK/book.txt" --out "$WORK/data" --tokenizer "$WORK/tok" >/dev/null
SETS=(--set model.vocab_size=384 --set model.n_layer=4 --set model.n_head=4 --set model.n_embd=64
      --set model.block_size=32 --set train.seq_len=32 --set train.batch_size=8 --set train.micro_batch_size=2
      --set train.steps=3 --set train.log_every=1 --set train.eval_every=0 --set train.sample_every=0
      --set train.checkpoint_every=0 --set train.threads=1 --set "data.train=$WORK/data/train"
      --set "data.val=$WORK/data/val" --set "data.tokenizer=$WORK/tok")
printf '%-6s %-5s %-12s %-14s %-14s %-7s %-16s %-16s %-6s\n' layout zero parameters "bytes/step" "ring formula" ratio \
  "AdamW B/rank" "unsharded B" ratio
for np in 2 4; do
  for zero in 0 1 2; do
    out="$WORK/dp${np}_z${zero}"
    "$REPO/tests/parallel/mpirun.sh" "$np" "$MODU" train "$REPO/recipes/gpt-tiny.toml" "${SETS[@]}" \
      --set parallel.zero=$zero --set "train.out_dir=$out" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
    python3 - "$out" "$np" "$zero" <<'PY'
import json, re, sys
out, n, zero = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
params = int(re.search(r"model: \w+, (\d+) parameters", open(out + ".log").read()).group(1))
last = [json.loads(l) for l in open(out + "/metrics.jsonl") if '"loss"' in l][-1]
S = 4 * params
phases = {0: 2, 1: 3, 2: 2}[zero]
formula = phases * (n - 1) / n * S
state, unsharded = last["optimizer_state_bytes"], 8 * params
print(f"DP{n:<4} {zero:<5} {params:<12} {last['dp_bytes_sent']:<14} {formula:<14.0f} {last['dp_bytes_sent'] / formula:<7.4f} "
      f"{state:<16} {unsharded:<16} {state / unsharded:.4f}")
PY
  done
done
