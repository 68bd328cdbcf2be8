#!/usr/bin/env bash
# cli_gan.sh - t2i gan train/sample from the command line: a tiny run, resume that
# reproduces an uninterrupted run byte for byte, and bad input that must fail cleanly
# (one line on stderr naming the problem, non-zero exit, nothing overwritten).
set -u
T2I=${1:?usage: cli_gan.sh path/to/t2i}
tmp=$(mktemp -d /tmp/t2i-cli-gan.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export T2I_PROGRESS_SECONDS=1000
small="--g-width 8 --d-width 8 --batch 8 --threads 2 --sample-every 2 --log-every 1"

# help at every level
"$T2I" gan --help >/dev/null || fail "gan --help"
"$T2I" gan train --help | grep -q -- "--resume" || fail "gan train --help lists --resume"
"$T2I" gan sample --help | grep -q -- "--interp" || fail "gan sample --help"

# a tiny run on Fashion-MNIST, then samples
"$T2I" gan train --data fashion-mnist --steps 4 $small --out "$tmp/a" >/dev/null 2>&1 || fail "tiny run"
for f in config.json metrics.jsonl checkpoint.safetensors samples/latest.png samples/step_000004.png; do
  [ -s "$tmp/a/$f" ] || fail "run folder lacks $f"
done
[ "$(grep -c '"loss_d"' "$tmp/a/metrics.jsonl")" = 4 ] || fail "metrics.jsonl has 4 step lines"
"$T2I" gan sample --ckpt "$tmp/a/checkpoint.safetensors" --n 5 --interp --out "$tmp/s" >/dev/null || fail "sample"
for f in 000000.png 000004.png grid.png interp.png; do [ -s "$tmp/s/$f" ] || fail "sample lacks $f"; done
# image i alone equals image i of the batch
"$T2I" gan sample --ckpt "$tmp/a/checkpoint.safetensors" --first 3 --n 1 --out "$tmp/s1" >/dev/null || fail "sample one"
cmp -s "$tmp/s/000003.png" "$tmp/s1/000003.png" || fail "regenerated sample 3 differs"

# a shipped-style copy (EMA generator only, bf16) samples; training refuses it
"$T2I" ckpt convert "$tmp/a/checkpoint.safetensors" "$tmp/inf.safetensors" --drop g. d. --rename ema.= >/dev/null \
  || fail "ckpt convert"
[ "$(stat -c %s "$tmp/inf.safetensors")" -lt "$(stat -c %s "$tmp/a/checkpoint.safetensors")" ] || fail "convert did not shrink"
"$T2I" gan sample --ckpt "$tmp/inf.safetensors" --n 2 --out "$tmp/si" >/dev/null || fail "sample from converted copy"
mkdir -p "$tmp/ri" && cp "$tmp/inf.safetensors" "$tmp/ri/checkpoint.safetensors"
if "$T2I" gan train --resume --out "$tmp/ri" 2>"$tmp/err"; then fail "resumed from an inference copy"; fi
grep -q "inference copy" "$tmp/err" || fail "inference-copy message: $(cat "$tmp/err")"

# intervals of 0 are refused up front (they were a division by zero)
for f in --sample-every --ckpt-every --log-every; do
  "$T2I" gan train --data fashion-mnist --steps 2 $small $f 0 --out "$tmp/z" 2>"$tmp/err"
  [ $? = 2 ] || fail "gan train $f 0 did not exit 2"
  grep -q -- "$f" "$tmp/err" || fail "$f 0 message: $(cat "$tmp/err")"
  [ ! -e "$tmp/z/checkpoint.safetensors" ] || fail "$f 0 wrote a checkpoint"
done
# so are other out-of-range flags (--steps -1 started a full 12000-step run), before the data loads
for fv in "--steps -1" "--epochs -1" "--ema-start -1" "--seed -1" "--res 40" "--channels 2" "--z-dim 0" \
          "--g-width 100000" "--depth 9"; do
  "$T2I" gan train --data "$tmp/nowhere" $fv --out "$tmp/z" 2>"$tmp/err"
  [ $? = 2 ] || fail "gan train $fv did not exit 2: $(cat "$tmp/err")"
  grep -q -- "${fv% *}" "$tmp/err" || fail "$fv message: $(cat "$tmp/err")"
done

# resume: 2 steps + 2 more == 4 steps
"$T2I" gan train --data fashion-mnist --steps 2 $small --out "$tmp/b" >/dev/null 2>&1 || fail "first half"
"$T2I" gan train --resume --steps 4 --threads 2 --out "$tmp/b" >/dev/null 2>&1 || fail "resume"
cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors" || fail "resumed run differs from uninterrupted run"

# an existing run is not overwritten without --resume
sum=$(md5sum < "$tmp/a/checkpoint.safetensors")
if "$T2I" gan train --data fashion-mnist --steps 2 $small --out "$tmp/a" 2>"$tmp/err"; then fail "overwrote a run"; fi
grep -q "already holds a run" "$tmp/err" || fail "message for an existing run: $(cat "$tmp/err")"
[ "$(md5sum < "$tmp/a/checkpoint.safetensors")" = "$sum" ] || fail "checkpoint changed"

# bad data: empty folder, an unreadable image, too few images
mkdir -p "$tmp/empty"
if "$T2I" gan train --data "$tmp/empty" $small --steps 1 --out "$tmp/r1" 2>"$tmp/err"; then fail "empty folder accepted"; fi
[ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "$tmp/empty" "$tmp/err" || fail "empty folder message: $(cat "$tmp/err")"
mkdir -p "$tmp/bad"
"$T2I" data fashion-mnist --split test --limit 20 --out "$tmp/cls" >/dev/null 2>&1 || fail "export class folders"
cp "$tmp"/cls/*/*.png "$tmp/bad/" 2>/dev/null
echo "not an image" > "$tmp/bad/zz_broken.png"
if "$T2I" gan train --data "$tmp/bad" $small --steps 1 --out "$tmp/r2" 2>"$tmp/err"; then fail "broken image accepted"; fi
grep -q "zz_broken.png" "$tmp/err" || fail "broken image not named: $(cat "$tmp/err")"
[ ! -e "$tmp/r2/checkpoint.safetensors" ] || fail "a checkpoint was written for bad data"

# class folders of mixed sizes are resized; class-conditional training works
"$T2I" gan train --data "$tmp/cls" --res 32 --channels 1 --cond class $small --steps 2 --out "$tmp/c" >/dev/null 2>&1 \
  || fail "class-conditional run on class folders"
"$T2I" gan sample --ckpt "$tmp/c/checkpoint.safetensors" --class 3 --n 2 --out "$tmp/cs" >/dev/null || fail "sample --class"
if "$T2I" gan sample --ckpt "$tmp/c/checkpoint.safetensors" --class 99 --out "$tmp/cs" 2>"$tmp/err"; then fail "class 99 accepted"; fi

# checkpoints of another kind are refused by name
if "$T2I" gan sample --ckpt "$T2I_SOURCE_DIR/tests/data/ops_ref.safetensors" --out "$tmp/x" 2>"$tmp/err"; then
  fail "non-t2i file accepted"; fi
grep -q "not a t2i checkpoint" "$tmp/err" || fail "message: $(cat "$tmp/err")"
if "$T2I" classify eval --ckpt "$tmp/a/checkpoint.safetensors" 2>"$tmp/err"; then fail "GAN accepted as classifier"; fi
grep -q "'gan' checkpoint, expected 'classifier'" "$tmp/err" || fail "message: $(cat "$tmp/err")"
if "$T2I" gan sample --ckpt "$tmp/missing.safetensors" 2>"$tmp/err"; then fail "missing checkpoint accepted"; fi
grep -q "missing.safetensors" "$tmp/err" || fail "missing file not named"
# bad flag values are refused, not clamped
if "$T2I" gan train --lr-g -1 --out "$tmp/r3" 2>"$tmp/err"; then fail "negative lr accepted"; fi
grep -q -- "--lr-g" "$tmp/err" || fail "bad lr message"
echo "cli_gan: ok"
