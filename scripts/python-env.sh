#!/usr/bin/env bash
# Creates or updates modu's cached Python virtualenv ($REPO/.venv, or $MODU_VENV) from the pins in
# scripts/requirements-test.txt. Idempotent: pip runs only when the venv is new or the pins changed
# (a sha256 of the requirements file is stamped inside the venv). Safe to run concurrently (flock).
# Usage: scripts/python-env.sh [--python]   (--python: print the venv's python path on stdout, last line)
# Needs: python3 with the venv module (Debian: python3-venv) and PyPI access the first time.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MODU_VENV:-$REPO/.venv}"
REQ="$REPO/scripts/requirements-test.txt"
PYTHON="${MODU_PYTHON:-python3}"
print_python=0
for arg in "$@"; do
  case "$arg" in
    --python) print_python=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "python-env: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

log() { echo "python-env: $*" >&2; }

mkdir -p "$VENV"
exec 9>"$VENV/.modu.lock"
flock 9

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
stamp="$VENV/.modu-requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "up to date ($VENV)"
else
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
      log "could not create a virtualenv with '$PYTHON -m venv' (on Debian: apt-get install python3-venv)"
      exit 1
    fi
  fi
  log "installing pins from $REQ"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" >&2
  echo "$want" > "$stamp"
  log "ready ($VENV)"
fi

if [ "$print_python" = 1 ]; then echo "$VENV/bin/python"; fi
