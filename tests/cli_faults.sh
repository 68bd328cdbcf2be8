#!/bin/bash
# cli_faults.sh - faults from outside: signals, kill -9 and a full disk, on commands that write.
#   1. SIGINT and SIGTERM while `sr upscale` writes a large image, while `generate` and
#      `dalle sample` write their many candidates and while `data` writes its images: the
#      process ends by that signal (status 130 / 143), no temporary file is left and no
#      output appears (no image of sr upscale, no metadata.jsonl of the others).
#   2. SIGTERM to a trainer saves a checkpoint and exits 143, like Ctrl-C (130).
#   3. kill -9 while a save is under way (the process frozen with SIGSTOP when its temp file
#      exists), then at random moments of a short `vq train` that saves every step (the
#      moments, some milliseconds after a step, come from a fixed seed and are printed), each
#      time resumed: the dead
#      writer's temp file goes when the run starts again, none is left at the end, the
#      checkpoint loads, and it is byte-identical to an uninterrupted run's.
#   4. A full disk (a small tmpfs; needs root, skipped otherwise) during a checkpoint save and
#      during `sr upscale`: one line that says "No space left on device", the previous file
#      intact, no temporary file left.
# Usage: bash tests/cli_faults.sh PATH/TO/t2i   (needs Debian's dataset-fashion-mnist)
source "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} T2I_PROGRESS_SECONDS=1000
SR=$ROOT/samples/models/sr.safetensors
TINY=(--preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 --code-dim 8 --codes 32
      --limit 64 --batch 8 --restart-every 2 --restart-threshold 1 --log-every 1 --sample-every 3
      --seed 5 --threads 2 --ckpt-every 1)

no_tmp() { # FOLDER WHAT: fails when a temporary file is left in FOLDER (or below)
    local left
    left=$(find "$1" -name '*.tmp.*' 2>/dev/null)
    [ -z "$left" ] || fail "$2: temporary file(s) left: $left"
}

# A background job of a script starts with SIGINT ignored, and t2i leaves a signal that its
# parent ignores alone (nohup); start it with the default actions instead.
start() { env --default-signal=INT,TERM "$@" & }

# catch PID GLOB: freezes PID (SIGSTOP) at a moment when a file matching GLOB exists and
# returns 0; returns 1 when PID ended first. PID in GLOB stands for the process id; a GLOB
# without '*' is tested with one stat. Only shell builtins in the loop: fast polling.
catch() {
    local pid=$1 glob=${2//PID/$1} n=0
    while :; do
        if [[ $glob == *'*'* ]]; then compgen -G "$glob" >/dev/null; else [ -e "$glob" ]; fi && {
            kill -STOP "$pid" 2>/dev/null || return 1
            if [[ $glob == *'*'* ]]; then compgen -G "$glob" >/dev/null; else [ -e "$glob" ]; fi && return 0
            kill -CONT "$pid"
        }
        ((++n % 64)) || kill -0 "$pid" 2>/dev/null || return 1
    done
}

# signal_mid_write SIG STATUS NAME GLOB CMD...: CMD is caught while a file matching GLOB is
# being written, gets SIG, must end with STATUS and leave no temporary file beside GLOB.
signal_mid_write() {
    local sig=$1 want=$2 name=$3 glob=$4
    shift 4
    start "$@" >/dev/null 2>"$TMP/err"
    local pid=$!
    if ! catch "$pid" "$glob"; then
        wait "$pid"
        fail "$name: ended before a temporary file was seen: $(cat "$TMP/err")"
        return
    fi
    kill "-$sig" "$pid"
    kill -CONT "$pid"
    wait "$pid"
    local rc=$?
    [ "$rc" = "$want" ] || fail "$name: SIG$sig gave status $rc, expected $want"
    no_tmp "$(dirname "$glob")" "$name after SIG$sig"
}

echo "[${SECONDS}s] signals while writing"
# ---- 1. signals while writing: sr upscale of a large image, generate and dalle sample with
# many candidates, data
python3 - "$TMP/large.png" <<'EOF'
import random, struct, sys, zlib
w = h = 320  # noise: its upscaled PNG does not compress below the full-disk test's space
rnd = random.Random(1)
rows = b"".join(b"\0" + rnd.randbytes(w * 3) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
EOF
mkdir -p "$TMP/up" "$TMP/gen"
for sig in INT TERM; do
    want=$([ $sig = INT ] && echo 130 || echo 143)
    signal_mid_write $sig "$want" "sr upscale" "$TMP/up/out.png.tmp.PID" \
        "$T2I" sr upscale --ckpt "$SR" --quiet "$TMP/large.png" "$TMP/up/out.png"
    [ -e "$TMP/up/out.png" ] && fail "sr upscale: SIG$sig left a partial out.png"
    rm -rf "$TMP/gen/$sig"
    signal_mid_write $sig "$want" "generate" "$TMP/gen/$sig/a_red_sneaker/*.tmp.*" \
        "$T2I" generate --prompt "a red sneaker" --candidates 64 --top 64 --batch 64 --threads 2 \
        --out "$TMP/gen/$sig"
    rm -rf "$TMP/ds/$sig"
    signal_mid_write $sig "$want" "dalle sample" "$TMP/ds/$sig/*.tmp.*" \
        "$T2I" dalle sample --ckpt "$ROOT/samples/models/dalle.safetensors" --prompt "a red sneaker" \
        --n 256 --batch 64 --threads 2 --out "$TMP/ds/$sig"
    [ -e "$TMP/ds/$sig/metadata.jsonl" ] && fail "dalle sample: SIG$sig left a metadata.jsonl"
    # data writes with 8 threads: another thread could create a temp file after the handler
    # had removed the tracked ones (left in about half the tries before nn/tmpfile.c's
    # creation window), hence three tries
    for try in 1 2 3; do
        rm -rf "$TMP/data/$sig"
        signal_mid_write $sig "$want" "data (try $try)" "$TMP/data/$sig/*.tmp.*" \
            "$T2I" data fashion-captions --split test --out "$TMP/data/$sig"
        [ -e "$TMP/data/$sig/metadata.jsonl" ] && fail "data: SIG$sig left a metadata.jsonl"
    done
done

echo "[${SECONDS}s] SIGTERM to a trainer"
# ---- 2. SIGTERM to a trainer: like Ctrl-C, a checkpoint, then status 143
start "$T2I" vq train "${TINY[@]}" --steps 1000 --out "$TMP/term" >/dev/null 2>"$TMP/err"
pid=$!
while kill -0 "$pid" 2>/dev/null && [ ! -e "$TMP/term/checkpoint.safetensors" ]; do sleep 0.05; done
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" = 143 ] || fail "vq train: SIGTERM gave status $rc, expected 143: $(cat "$TMP/err")"
grep -q "interrupted at step" "$TMP/err" || fail "vq train: SIGTERM did not say where it stopped: $(cat "$TMP/err")"
"$T2I" ckpt info "$TMP/term/checkpoint.safetensors" >/dev/null 2>&1 || fail "vq train: the checkpoint after SIGTERM does not load"
no_tmp "$TMP/term" "vq train after SIGTERM"

echo "[${SECONDS}s] kill -9 and resume"
# ---- 3. kill -9 at random moments, resumed each time: the end is byte-identical
STEPS=16
"$T2I" vq train "${TINY[@]}" --steps $STEPS --out "$TMP/ref" >/dev/null 2>"$TMP/err" || fail "uninterrupted run: $(cat "$TMP/err")"
K=$TMP/killed
launch() { # the run in $K: resumed when it has a checkpoint, else started afresh; $1: nice level
    local args=(--resume)
    [ -e "$K/checkpoint.safetensors" ] || args=("${TINY[@]}" --steps $STEPS)
    nice -n "${1:-0}" "$T2I" vq train "${args[@]}" --out "$K" >/dev/null 2>>"$TMP/kill.log" &
}
ckpt_step() { "$T2I" ckpt info "$K/checkpoint.safetensors" 2>/dev/null | grep -o '"step":[0-9]*' | head -n1 | cut -d: -f2; }
# inside a save, for certain: the run frozen while a checkpoint's temp file exists (a later
# save than the first, so that there is a checkpoint to resume from)
launch 19 # niced: the polling shell runs more often than the run on a busy machine
pid=$!
# (no time bound: on a loaded machine the first save may take long; the run ends anyway)
while kill -0 "$pid" 2>/dev/null && [ ! -e "$K/checkpoint.safetensors" ]; do sleep 0.02; done
if [ -e "$K/checkpoint.safetensors" ] && catch "$pid" "$K/checkpoint.safetensors.tmp.PID"; then
    kill -9 "$pid"
    kill -CONT "$pid"
    wait "$pid" 2>/dev/null
    stale=$(compgen -G "$K/checkpoint.safetensors.tmp.*")
    at=$(ckpt_step)
    echo "kill -9 inside a save: checkpoint at step $at; left: ${stale#"$K/"}"
    # a resume that runs no step removes the dead writer's temp file when the run starts
    "$T2I" vq train --resume --steps "$at" --out "$K" >/dev/null 2>>"$TMP/kill.log" || fail "resume to step $at"
    [ -e "$stale" ] && fail "resume kept the dead writer's $stale"
else
    wait "$pid"
    fail "the run ended before a save was caught: $(tail -n 3 "$TMP/kill.log")"
fi
# then at random moments: after the attempt's first new metrics line (each attempt makes
# progress, however loaded the machine), a random 0-119 ms more - a step takes ~80 ms, a
# save a few of them
lines() { cat "$K/metrics.jsonl" 2>/dev/null | wc -l; }
RANDOM=20 # fixed moments
for i in 1 2 3 4 5 6; do
    ms=$((RANDOM % 120))
    before=$(lines)
    launch
    pid=$!
    while kill -0 "$pid" 2>/dev/null && [ "$(lines)" -le "$before" ]; do sleep 0.01; done
    sleep "0.$(printf %03d $ms)"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    left=$(find "$K" -name '*.tmp.*' 2>/dev/null | sed "s|$K/||" | tr '\n' ' ')
    echo "kill -9 $i, ${ms} ms after a step: checkpoint at step $(ckpt_step); left: ${left:-nothing}"
done
launch
wait $! || fail "final resume: $(tail -n 3 "$TMP/kill.log")"
no_tmp "$K" "killed and resumed run"
"$T2I" ckpt info "$K/checkpoint.safetensors" >/dev/null 2>&1 || fail "the resumed run's checkpoint does not load"
cmp -s "$TMP/ref/checkpoint.safetensors" "$K/checkpoint.safetensors" ||
    fail "killed and resumed run differs from the uninterrupted one (step $(ckpt_step))"

echo "[${SECONDS}s] a full disk"
# ---- 4. a full disk: a tmpfs too small for the next write
full_disk() {
    local M=$TMP/full
    mkdir -p "$M"
    if [ "$(id -u)" != 0 ]; then
        echo "full-disk checks skipped: not root (they mount a small tmpfs)"
        return
    fi
    if ! mount -t tmpfs -o size=384k tmpfs "$M" 2>"$TMP/err"; then
        echo "full-disk checks skipped: cannot mount a tmpfs: $(cat "$TMP/err")"
        return
    fi
    trap 'umount "$TMP/full" 2>/dev/null; rm -rf "$TMP"' EXIT
    # a checkpoint (205 KiB) fits once; the next save needs room for a second copy
    "$T2I" vq train "${TINY[@]}" --steps 1 --sample-every 100 --out "$M/run" >/dev/null 2>"$TMP/err" ||
        fail "full disk: the first step did not fit: $(cat "$TMP/err")"
    cp "$M/run/checkpoint.safetensors" "$TMP/before.safetensors"
    check_error "No space left on device" "$T2I" vq train --resume --steps 3 --out "$M/run"
    cmp -s "$TMP/before.safetensors" "$M/run/checkpoint.safetensors" || fail "full disk: the previous checkpoint changed"
    no_tmp "$M" "full disk during a checkpoint"
    rm -rf "$M/run"
    # an upscaled image larger than the space left
    "$T2I" sr upscale --ckpt "$SR" --quiet "$ROOT/tests/data/img/rs_src_rgb64.png" "$M/out.png" ||
        fail "full disk: a small upscale did not fit"
    cp "$M/out.png" "$TMP/before.png"
    check_error "No space left on device" "$T2I" sr upscale --ckpt "$SR" --quiet "$TMP/large.png" "$M/out.png"
    cmp -s "$TMP/before.png" "$M/out.png" || fail "full disk: the previous out.png changed"
    no_tmp "$M" "full disk during sr upscale"
    umount "$M" || fail "cannot unmount $M"
    trap 'rm -rf "$TMP"' EXIT
}
full_disk
echo "[${SECONDS}s] done"
finish
