#!/usr/bin/env bash
# bench/gpu/run_gpt2.sh BENCH_BINARY [B] — GPT-2 124M, T=1024, on the GPU: modu (f32, bf16 parameters)
# and PyTorch (eager f32, eager bf16 autocast, torch.compile bf16 autocast) in the same run on the
# same card, then the ratios. Prints JSON lines and a table. BF16_ONLY=1 skips the two f32 runs (for a
# second, larger micro-batch). MODU_ONLY=1 runs modu's autocast step alone (with its per-op profile), for
# another attention path (MODU_CUDA_ATTENTION) beside a full run's PyTorch figures.
set -u
BIN=${1:?usage: run_gpt2.sh BENCH_BINARY [B]}
B=${2:-8}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTJ=$(mktemp)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
MODES=eager_f32,eager_bf16,compile_bf16
if [[ "${MODU_ONLY:-0}" == 1 ]]; then
  echo "attention path: ${MODU_CUDA_ATTENTION:-auto}"
  "$BIN" --B "$B" --dtype autocast --profile events
  exit $?
fi
if [[ "${BF16_ONLY:-0}" == 1 ]]; then
  MODES=eager_bf16,compile_bf16
else
  "$BIN" --B "$B" --dtype f32 | tee -a "$OUTJ"
fi
"$BIN" --B "$B" --dtype bf16 | tee -a "$OUTJ"
# The per-op table: CUDA events around each op, nothing waits (core/ops/dispatch.h, ProfileMode::Events).
"$BIN" --B "$B" --dtype autocast --profile events | tee -a "$OUTJ"
timeout 170 python3 "$HERE/bench_gpt2_torch.py" --B "$B" --modes "$MODES" | tee -a "$OUTJ"
python3 - "$OUTJ" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def tps(impl, key):
    for r in rows:
        if r.get("impl") == impl and (r.get("dtype") == key or r.get("mode") == key) and "tokens_per_s" in r:
            return r["tokens_per_s"]
print("%-22s %12s %8s" % ("run", "tokens/s", "MFU"))
for r in rows:
    if "tokens_per_s" in r:
        host = " (host enqueues fwd+bwd in %.1f of %.1f ms)" % (r["host_enqueue_fwd_bwd_ms"], r["ms_per_step"]) if "host_enqueue_fwd_bwd_ms" in r else ""
        print("%-22s %12d %7.2f%%%s" % (r["impl"] + " " + r.get("dtype", r.get("mode", "")), r["tokens_per_s"], 100 * r["mfu"], host))
    else:
        print("%-22s error: %s" % (r["impl"] + " " + r.get("mode", ""), r.get("error", "")))
for a, b in [(("modu", "f32"), ("torch", "eager_f32")), (("modu", "autocast"), ("torch", "eager_bf16")),
             (("modu", "autocast"), ("torch", "compile_bf16")), (("modu", "bf16"), ("torch", "eager_bf16"))]:
    x, y = tps(*a), tps(*b)
    if x and y:
        print("ratio %s %s / %s %s = %.3f" % (a + b + (x / y,)))
PY
rm -f "$OUTJ"
