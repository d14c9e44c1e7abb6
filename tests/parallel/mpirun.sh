#!/usr/bin/env bash
# tests/parallel/mpirun.sh NP COMMAND...: runs COMMAND on NP local ranks under Open MPI's mpirun, as CI
# needs it: more ranks than cores (--oversubscribe), as root (--allow-run-as-root, CI runs as root),
# one CPU thread per rank, shared-memory transport without the ptrace-based single copy (containers
# forbid it). mpirun runs under launch/mpirun.sh: SIGTERM or SIGINT to this script stops `modu train`
# gracefully (all ranks commit a checkpoint and exit 0). Exit status: mpirun's (non-zero when any rank failed).
set -euo pipefail
np="$1"
shift
MPIRUN="${MPIRUN:-mpirun}"
command -v "$MPIRUN" >/dev/null || { echo "mpirun.sh: $MPIRUN not found: install openmpi-bin (scripts/install-deps.sh)" >&2; exit 1; }
args=(-np "$np" --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
[ "$(id -u)" = 0 ] && args+=(--allow-run-as-root)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# Open MPI's own allocations outlive MPI_Finalize: LeakSanitizer would report them.
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$(dirname "${BASH_SOURCE[0]}")/lsan-mpi.supp"
export MPIRUN
args+=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x LSAN_OPTIONS)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch/mpirun.sh" "${args[@]}" "$@"
