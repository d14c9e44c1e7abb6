#!/usr/bin/env bash
# launch/mpirun.sh MPIRUN-ARGS...: Open MPI's mpirun with a graceful stop. SIGTERM, SIGINT or SIGHUP to this
# script reaches every rank as SIGUSR1, on which `modu train` finishes the step on all ranks together,
# commits one checkpoint and exits 0; the script then exits with mpirun's status (0 when every rank exited 0).
# A second such signal kills the job (SIGTERM to mpirun). SIGUSR1 and SIGUSR2 are passed on to mpirun as is.
#
# Why a wrapper: Open MPI 4.1's mpirun refuses to forward SIGTERM or SIGINT (ess_base_forward_signals rejects
# both); on either it sends the ranks SIGCONT, waits odls_base_sigkill_timeout seconds (default 1), sends
# SIGTERM, waits again, sends SIGKILL, and exits 1 whatever the ranks did. It does forward SIGUSR1. Schedulers
# and users send SIGTERM to the job, so the job is started through this script:
#   launch/mpirun.sh -np 4 build/launch/modu train recipes/gpt-tiny.toml
# MPIRUN names the mpirun to run (default: mpirun on PATH).
set -uo pipefail
MPIRUN="${MPIRUN:-mpirun}"
command -v "$MPIRUN" >/dev/null || { echo "launch/mpirun.sh: $MPIRUN not found: install openmpi-bin" >&2; exit 1; }
# mpirun runs in the background, so that this shell can take signals, and in a session of its own, so that
# Ctrl-C (SIGINT to the terminal's foreground process group) reaches this script only; `<&0` keeps stdin (a
# background command of a non-interactive shell would otherwise read /dev/null).
setsid "$MPIRUN" "$@" <&0 &
pid=$!
stops=0
interrupted=0
on_stop() {
  interrupted=1
  stops=$((stops + 1))
  if [ "$stops" = 1 ]; then
    kill -USR1 "$pid" 2>/dev/null
  else
    kill -TERM "$pid" 2>/dev/null
  fi
}
forward() {  # SIGUSR1 and SIGUSR2 pass through as they are (mpirun forwards both to the ranks)
  interrupted=1
  kill "-$1" "$pid" 2>/dev/null
}
trap on_stop TERM INT HUP
trap 'forward USR1' USR1
trap 'forward USR2' USR2
# A trapped signal cuts `wait` short (status > 128, then the trap runs): wait again until mpirun has ended.
rc=0
while :; do
  interrupted=0
  wait "$pid"
  status=$?
  [ "$status" = 127 ] && break  # already waited for (a signal came just after it ended): rc holds its status
  rc=$status
  [ "$interrupted" = 1 ] || break
done
exit "$rc"
