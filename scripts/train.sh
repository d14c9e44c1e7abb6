#!/usr/bin/env bash
# The main job, from a fresh machine: system packages, a Release build of the `modu` command, the
# bundled corpus (public-domain books from Debian packages), a 4096-token BPE trained on it, token
# shards, then `modu train recipes/gpt-tiny.toml` (about ten minutes on 2 CPU cores). Progress lines
# go to the terminal, metrics to runs/gpt-tiny/metrics.jsonl, checkpoints to runs/gpt-tiny/checkpoints/.
# Running it again resumes from the last checkpoint; extra arguments go to `modu train` (--set k=v).
# Usage: scripts/train.sh [--set key=value]...
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
JOBS="${MODU_JOBS:-$(nproc)}"

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS" --target modu
MODU=build/launch/modu

scripts/extract-corpus.sh .cache/corpus
if [ ! -f runs/data/tiny/tokenizer/modu-tokenizer.json ]; then
  "$MODU" prepare tokenizer --input '.cache/corpus/*.txt' --vocab-size 4096 --out runs/data/tiny/tokenizer
fi
if [ ! -f runs/data/tiny/meta.json ]; then
  "$MODU" prepare text --input '.cache/corpus/*.txt' --tokenizer runs/data/tiny/tokenizer --out runs/data/tiny
fi
exec "$MODU" train recipes/gpt-tiny.toml "$@"
