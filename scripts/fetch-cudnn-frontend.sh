#!/usr/bin/env bash
# Fetches the headers of NVIDIA's cuDNN frontend (header-only C++ API over cuDNN's graph backend, MIT
# licence), pinned to one wheel of PyPI's nvidia-cudnn-frontend and checked against its SHA-256, into
# .cache/cudnn-frontend/include. core/cuda/attention_cudnn.cpp (cuDNN's fused flash attention) is compiled
# only when they are there; CMake says so when they are not.
# Invariants: idempotent (a complete copy is reused), nothing outside .cache/ is written, and a wheel whose
# hash differs is refused (nothing extracted).
# Usage: scripts/fetch-cudnn-frontend.sh          (needs python3 with venv, and PyPI)
set -euo pipefail

VERSION="1.32.0"
WHEEL="nvidia_cudnn_frontend-${VERSION}-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
SHA256="c6006556017a4d1c914c52a556c71b1267f2d6a0500f742e7b4edef539878df0"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/.cache/cudnn-frontend"
STAMP="$DEST/VERSION"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" && -f "$DEST/include/cudnn_frontend.h" ]]; then
  echo "fetch-cudnn-frontend: $VERSION present in $DEST"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PYTHON="${MODU_PYTHON:-python3}"
"$PYTHON" -m venv "$WORK/venv"
# The wheel's tag is named so the same file (and hash) is fetched whatever the local Python is.
"$WORK/venv/bin/pip" download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 -d "$WORK" "nvidia-cudnn-frontend==$VERSION"
if [[ ! -f "$WORK/$WHEEL" ]]; then
  echo "fetch-cudnn-frontend: pip did not fetch $WHEEL; got: $(ls "$WORK")" >&2
  exit 1
fi
GOT="$(sha256sum "$WORK/$WHEEL" | cut -d' ' -f1)"
if [[ "$GOT" != "$SHA256" ]]; then
  echo "fetch-cudnn-frontend: $WHEEL has SHA-256 $GOT, expected $SHA256; refusing it" >&2
  exit 1
fi
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
"$PYTHON" - "$WORK/$WHEEL" "$DEST.tmp" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("include/") or n.endswith(("LICENSE.txt", "NOTICE"))]
    z.extractall(dest, members=names)
print(f"fetch-cudnn-frontend: extracted {len(names)} files")
PY
echo "$VERSION" > "$DEST.tmp/VERSION"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch-cudnn-frontend: $VERSION in $DEST"
