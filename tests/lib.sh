# lib.sh - what the shell tests (tests/cli_*.sh) share. Each sources it first, with the
# script's own arguments:
#     source "$(dirname "$0")/lib.sh"
# It turns on set -u and sets
#   T2I     the t2i binary under test (the script's first argument; required)
#   ROOT    the source tree ($T2I_SOURCE_DIR, else the folder above tests/)
#   TMP     a fresh temporary folder, removed when the script exits
#   FAILS   the number of failed checks so far
# and defines
#   fail MESSAGE...           prints "FAIL: MESSAGE" on stderr and counts one failure
#   check_error WANT CMD...   CMD must fail with exactly one stderr line containing WANT
#   is_png FILE               true when FILE starts with the PNG signature
#   mpi_setup                 skips the script (77) unless mpirun and an MPI build of $T2I are
#                             there; sets Open MPI up for ranks on this machine (as root, no
#                             ssh, shared memory, oversubscribed); then `mpi2 ARGS...` runs
#                             $T2I ARGS with 2 ranks
#   finish                    the summary line; exits 1 when any check failed, else 0
set -u
T2I_TEST=$(basename "$0" .sh)
T2I=${1:?usage: $T2I_TEST.sh PATH/TO/t2i}
ROOT=${T2I_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "/tmp/t2i-$T2I_TEST-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FAILS=0

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }

check_error() { # expected-substring command...
    local want=$1
    shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        fail "'$*' succeeded"
        return
    fi
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "'$*': expected one line of error, got: $(cat "$TMP/err")"
    grep -q -- "$want" "$TMP/err" || fail "'$*': error lacks '$want': $(cat "$TMP/err")"
}

mpi_setup() {
    command -v mpirun >/dev/null || { echo "$T2I_TEST: skipped (no mpirun; apt-get install openmpi-bin)"; exit 77; }
    grep -q "^T2I_MPI:BOOL=ON" "$(dirname "$T2I")/CMakeCache.txt" 2>/dev/null ||
        { echo "$T2I_TEST: skipped (t2i built without MPI)"; exit 77; }
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=false
    export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
}
# In a sanitizer build (tests/sanitize.sh) Open MPI's plugins leak at MPI_Finalize, from
# modules unloaded by then (no suppression can name them): leak checking is off for the
# ranks that mpirun starts and stays on for every single-process run.
mpi2() {
    local asan=${ASAN_OPTIONS:-}
    ASAN_OPTIONS=${asan//detect_leaks=1/detect_leaks=0} mpirun -np 2 -x ASAN_OPTIONS -x UBSAN_OPTIONS "$T2I" "$@"
}

is_png() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e47" ]; }

finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "$T2I_TEST: $FAILS check(s) failed" >&2
        exit 1
    fi
    echo "$T2I_TEST: all checks passed"
    exit 0
}
