#!/usr/bin/env bash
# cli_mpi.sh - data-parallel training under Open MPI (run/dist.h): for each trainer, a few
# steps with 2 ranks against 1 process at the same global batch must give the same losses
# (metrics.jsonl) and final weights within a stated tolerance (tests/mpi_close.py explains
# it: the ranks add their sums in another order, and Adam turns the rounding noise of a
# zero gradient into steps of +-lr). Each comparison has a negative control: the same run
# with one synchronisation switched off (T2I_DIST_BREAK, run/dist.h) must NOT compare equal,
# which shows that the tolerance would catch a wrong gradient average or an unsynchronised
# BatchNorm. Skipped (77) when mpirun is missing or t2i was built without MPI.
source "$(dirname "$0")/lib.sh"
export T2I_PROGRESS_SECONDS=1000
command -v mpirun >/dev/null || { echo "cli_mpi: skipped (no mpirun; apt-get install openmpi-bin)"; exit 77; }
grep -q "^T2I_MPI:BOOL=ON" "$(dirname "$T2I")/CMakeCache.txt" 2>/dev/null ||
  { echo "cli_mpi: skipped (t2i built without MPI)"; exit 77; }
# a container: root is allowed, no ssh or resource manager, shared memory between the ranks
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=false
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
CLOSE="python3 $ROOT/tests/mpi_close.py"
mpi2() { mpirun -np 2 -x T2I_PROGRESS_SECONDS -x T2I_DIST_BREAK "$T2I" "$@"; }
export T2I_DIST_BREAK=

# same() NAME CMD...: CMD run once alone (--out $TMP/NAME.1) and with 2 ranks (--out $TMP/NAME.2)
# must agree; with each BREAK in $BREAKS it must not.
same() {
  local name=$1
  shift
  "$T2I" "$@" --out "$TMP/$name.1" >"$TMP/$name.1.log" 2>&1 || { fail "$name: one process: $(tail -3 "$TMP/$name.1.log")"; return; }
  mpi2 "$@" --out "$TMP/$name.2" >"$TMP/$name.2.log" 2>&1 || { fail "$name: 2 ranks: $(tail -3 "$TMP/$name.2.log")"; return; }
  $CLOSE $CLOSE_ARGS "$TMP/$name.1" "$TMP/$name.2" >"$TMP/$name.cmp" || fail "$name: 2 ranks differ from 1: $(cat "$TMP/$name.cmp")"
  [ "$(grep -c "^$name train:" "$TMP/$name.2.log")" = "$(grep -c "^$name train:" "$TMP/$name.1.log")" ] ||
    fail "$name: ranks above 0 wrote to stdout: $(cat "$TMP/$name.2.log")"
  grep -q '"ranks":2' "$TMP/$name.2/config.json" || fail "$name: config.json lacks the rank count"
  for br in $BREAKS; do
    T2I_DIST_BREAK=$br mpi2 "$@" --out "$TMP/$name.$br" >"$TMP/$name.$br.log" 2>&1 || { fail "$name ($br off) failed"; continue; }
    if $CLOSE $CLOSE_ARGS "$TMP/$name.1" "$TMP/$name.$br" >"$TMP/$name.$br.cmp"; then
      fail "$name: with $br unsynchronised the runs still compare equal: the test cannot see that error"
    fi
  done
}

# GAN: BatchNorm in G and D (synchronised), class conditions with mismatched pairs that wrap
# around the global batch, noise drawn for the global batch
CLOSE_ARGS="" BREAKS="bn grad" same gan gan train --data fashion-mnist --steps 4 --g-width 8 --d-width 8 --batch 8 \
  --mismatch 1 --threads 1 --sample-every 2 --log-every 1
# a batch that does not split evenly is refused before anything runs
mpi2 gan train --data fashion-mnist --steps 1 --batch 7 --out "$TMP/odd" >/dev/null 2>"$TMP/err" && fail "batch 7 over 2 ranks ran"
grep -q -- "--batch 7 does not split evenly over 2 ranks" "$TMP/err" || fail "odd batch message: $(cat "$TMP/err")"

finish
