#!/usr/bin/env bash
# cli_mpi_generate.sh - `mpirun -np 2 t2i generate` deals each caption's candidate batches
# out to the ranks and merges their best (generate/rank.c): the written files must be the
# single process's, byte for byte (candidate i is the same image on any rank; scores and
# order the same), and only rank 0 writes. Skipped (77) without mpirun or an MPI build.
source "$(dirname "$0")/lib.sh"
mpi_setup
export T2I_PROGRESS_SECONDS=1000

# run NAME ARGS...: ARGS once alone and once with 2 ranks; every output file must be equal
run() {
    local name=$1
    shift
    "$T2I" generate "$@" --threads 1 --out "$TMP/$name.1" >"$TMP/$name.1.log" 2>&1 ||
        { fail "$name: one process: $(tail -3 "$TMP/$name.1.log")"; return; }
    mpi2 generate "$@" --threads 1 --out "$TMP/$name.2" >"$TMP/$name.2.log" 2>&1 ||
        { fail "$name: 2 ranks: $(tail -3 "$TMP/$name.2.log")"; return; }
    diff -r "$TMP/$name.1" "$TMP/$name.2" >/dev/null || fail "$name: 2 ranks wrote other files than 1: $(diff -rq "$TMP/$name.1" "$TMP/$name.2" | head -3)"
    [ "$(find "$TMP/$name.2" -type f | wc -l)" -gt 3 ] || fail "$name: too few files written"
    [ "$(grep -c '^generate: "' "$TMP/$name.2.log")" = "$(grep -c '^generate: "' "$TMP/$name.1.log")" ] ||
        fail "$name: ranks above 0 wrote to stdout: $(head -5 "$TMP/$name.2.log")"
}

# both generators, 6 batches of 8 (3 a source): each rank makes 3, the kept 10 come from both
printf 'a red sneaker\na blue dress\n' >"$TMP/captions.txt"
run both --prompts "$TMP/captions.txt" --generator both --candidates 24 --batch 8 --top 10
# a batch count that does not split evenly (5 batches), and the upscaler on rank 0
run upscale --prompt "a green bag" --candidates 20 --batch 4 --top 3 --upscale "$ROOT/samples/models/sr.safetensors"

# the kept results really come from both ranks' batches: in "both", some kept candidate lies
# in a batch of rank 1 (batches 1, 3, 5 of the run: dalle 8-15, gan 0-7 and 16-23)
python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
def batch(x): return (0 if x["source"] == "dalle" else 3) + x["candidate"] // 8
assert any(batch(x) % 2 == 1 for x in r), [(x["source"], x["candidate"]) for x in r]
assert any(batch(x) % 2 == 0 for x in r), [(x["source"], x["candidate"]) for x in r]' "$TMP/both.2/scores.json" ||
    fail "the kept results do not come from both ranks"
finish
