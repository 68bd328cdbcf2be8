#!/usr/bin/env bash
# cli_lock.sh - one run per run folder. A second trainer on a folder that a live run holds
# (a new run, or --resume) fails at once with one line naming the folder and the holder's
# PID, exit 1, and touches nothing; the kernel drops the lock when the holder dies, so after
# a kill -9 the run resumes.
source "$(dirname "$0")/lib.sh"
export T2I_PROGRESS_SECONDS=1000
small="--data fashion-mnist --g-width 8 --d-width 8 --batch 8 --threads 1 --sample-every 100000 --log-every 1"
run=$TMP/run

# the holder: a long tiny run, stopped (SIGSTOP) once it has a checkpoint so that the folder
# stays still while the second runs are tried
"$T2I" gan train $small --steps 100000 --ckpt-every 5 --out "$run" >/dev/null 2>"$TMP/first.err" &
first=$!
for _ in $(seq 300); do [ -e "$run/checkpoint.safetensors" ] && break; sleep 0.1; done
kill -STOP "$first"
[ -e "$run/checkpoint.safetensors" ] || fail "the first run wrote no checkpoint: $(cat "$TMP/first.err")"
[ "$(cat "$run/.lock" 2>/dev/null)" = "$first" ] || fail "$run/.lock does not name the first run ($first)"
snapshot() { (cd "$run" && ls -A && md5sum config.json metrics.jsonl checkpoint.safetensors); }
before=$(snapshot)

for args in "$small --steps 10" "--resume --steps 100000 --threads 1"; do
  timeout 20 "$T2I" gan train $args --out "$run" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  [ "$rc" = 1 ] || fail "second run ($args): exit $rc, want 1"
  [ "$(wc -l <"$TMP/err")" = 1 ] || fail "second run ($args): not one line: $(cat "$TMP/err")"
  grep -q "^t2i: $run: .*PID $first" "$TMP/err" || fail "second run ($args): folder or PID not named: $(cat "$TMP/err")"
  [ ! -s "$TMP/out" ] || fail "second run ($args) printed on stdout: $(cat "$TMP/out")"
  [ "$(snapshot)" = "$before" ] || fail "second run ($args) changed the run folder"
done

# kill -9 leaves no lock behind: --resume continues from the checkpoint
kill -KILL "$first"
wait "$first" 2>/dev/null
step=$("$T2I" ckpt info "$run/checkpoint.safetensors" | sed -n 's/.*state: {"step":\([0-9]*\),.*/\1/p')
[ -n "$step" ] || fail "no step in the checkpoint's state"
"$T2I" gan train --resume --steps $((step + 2)) --threads 1 --out "$run" >/dev/null 2>"$TMP/err" \
  || fail "resume after kill -9: $(cat "$TMP/err")"
"$T2I" ckpt info "$run/checkpoint.safetensors" | grep -q "state: {\"step\":$((step + 2))," \
  || fail "the resumed run did not reach step $((step + 2))"
[ ! -e "$run/.lock" ] || fail "a finished run left $run/.lock"

# a run that fails before it starts leaves an existing folder as it found it (no .lock)
mkdir -p "$TMP/empty"
if "$T2I" gan train --data "$TMP/nowhere" --steps 1 --out "$TMP/empty" 2>/dev/null; then fail "ran on missing data"; fi
[ -z "$(ls -A "$TMP/empty")" ] || fail "a failed run left files: $(ls -A "$TMP/empty")"

finish
