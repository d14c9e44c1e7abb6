#!/usr/bin/env bash
# Creates or updates one of modu's cached Python virtualenvs from its pins: set NAME uses
# scripts/requirements-NAME.txt and the venv $REPO/.venv-NAME; the default set "test" uses
# scripts/requirements-test.txt and $REPO/.venv (or $MODU_VENV). Idempotent: pip runs only when the venv
# is new or the pins changed (a sha256 of the requirements file is stamped inside the venv). Safe to run
# concurrently (flock).
# Usage: scripts/python-env.sh [--set NAME] [--python]   (--python: print the venv's python path on
#        stdout, last line)
# Needs: python3 with the venv module (Debian: python3-venv) and PyPI access the first time.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${MODU_PYTHON:-python3}"
print_python=0
set_name=test
while [ $# -gt 0 ]; do
  case "$1" in
    --python) print_python=1 ;;
    --set) set_name="${2:?python-env: --set needs a NAME}"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "python-env: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
REQ="$REPO/scripts/requirements-$set_name.txt"
if [ ! -f "$REQ" ]; then echo "python-env: no pins for set '$set_name' ($REQ)" >&2; exit 2; fi
if [ "$set_name" = test ]; then VENV="${MODU_VENV:-$REPO/.venv}"; else VENV="$REPO/.venv-$set_name"; fi

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
