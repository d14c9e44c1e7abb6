#!/usr/bin/env bash
# Creates (idempotently) the virtualenv that runs tests/fixtures/gen_op_fixtures.py: pinned torch and numpy
# from PyPI. Prints the venv's python path on stdout (last line); everything else goes to stderr.
# Invariants: an existing venv whose torch and numpy already have the pinned versions is used as is (a
# local build suffix such as "+cu130" is accepted); nothing is ever deleted; concurrent runs serialise (flock).
# Usage: scripts/torch-env.sh [DIR]
#   DIR defaults to /work/venv-torch when that exists, else $REPO/.cache/venv-torch.
# Needs: python3 with the venv module (Debian: python3-venv) and PyPI access when something must be installed.
set -euo pipefail

TORCH_PIN="2.11.0"
NUMPY_PIN="2.4.6"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${MODU_PYTHON:-python3}"
case "${1:-}" in
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
esac
if [ $# -gt 1 ]; then echo "torch-env: at most one argument (DIR), got $#" >&2; exit 2; fi
if [ $# -eq 1 ]; then
  VENV="$1"
elif [ -d /work/venv-torch ]; then
  VENV=/work/venv-torch
else
  VENV="$REPO/.cache/venv-torch"
fi

log() { echo "torch-env: $*" >&2; }

# True when the venv's torch and numpy have the pinned versions (torch may carry a "+local" suffix).
pins_ok() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - "$TORCH_PIN" "$NUMPY_PIN" >/dev/null 2>&1 <<'EOF'
import sys
import numpy, torch
want_torch, want_numpy = sys.argv[1], sys.argv[2]
sys.exit(0 if torch.__version__.split("+")[0] == want_torch and numpy.__version__ == want_numpy else 1)
EOF
}

mkdir -p "$VENV"
exec 9>>"$VENV/.modu-torch-env.lock"
flock 9

if pins_ok; then
  log "up to date ($VENV: torch $TORCH_PIN, numpy $NUMPY_PIN)"
else
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
      log "could not create a virtualenv with '$PYTHON -m venv' (on Debian: apt-get install python3-venv)"
      exit 1
    fi
  fi
  log "installing torch==$TORCH_PIN numpy==$NUMPY_PIN from PyPI into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==$TORCH_PIN" "numpy==$NUMPY_PIN" >&2
  if ! pins_ok; then
    log "after installing, $VENV still does not import torch $TORCH_PIN and numpy $NUMPY_PIN"
    exit 1
  fi
  log "ready ($VENV)"
fi

echo "$VENV/bin/python"
