#!/usr/bin/env bash
# cli_gan.sh - t2i gan train/sample from the command line: a tiny run, resume that
# reproduces an uninterrupted run byte for byte, and bad input that must fail cleanly
# (one line on stderr naming the problem, non-zero exit, nothing overwritten).
source "$(dirname "$0")/lib.sh"
export T2I_PROGRESS_SECONDS=1000
small="--g-width 8 --d-width 8 --batch 8 --threads 2 --sample-every 2 --log-every 1"

# help at every level
"$T2I" gan --help >/dev/null || fail "gan --help"
"$T2I" gan train --help | grep -q -- "--resume" || fail "gan train --help lists --resume"
"$T2I" gan sample --help | grep -q -- "--interp" || fail "gan sample --help"

# a tiny run on Fashion-MNIST, then samples
"$T2I" gan train --data fashion-mnist --steps 4 $small --out "$TMP/a" >/dev/null 2>&1 || fail "tiny run"
for f in config.json metrics.jsonl checkpoint.safetensors samples/latest.png samples/step_000004.png; do
  [ -s "$TMP/a/$f" ] || fail "run folder lacks $f"
done
[ "$(grep -c '"loss_d"' "$TMP/a/metrics.jsonl")" = 4 ] || fail "metrics.jsonl has 4 step lines"
"$T2I" gan sample --ckpt "$TMP/a/checkpoint.safetensors" --n 5 --interp --out "$TMP/s" >/dev/null || fail "sample"
for f in 000000.png 000004.png grid.png interp.png; do [ -s "$TMP/s/$f" ] || fail "sample lacks $f"; done
# image i alone equals image i of the batch
"$T2I" gan sample --ckpt "$TMP/a/checkpoint.safetensors" --first 3 --n 1 --out "$TMP/s1" >/dev/null || fail "sample one"
cmp -s "$TMP/s/000003.png" "$TMP/s1/000003.png" || fail "regenerated sample 3 differs"

# a shipped-style copy (EMA generator only, bf16) samples; training refuses it
"$T2I" ckpt convert "$TMP/a/checkpoint.safetensors" "$TMP/inf.safetensors" --drop g. d. --rename ema.= >/dev/null \
  || fail "ckpt convert"
[ "$(stat -c %s "$TMP/inf.safetensors")" -lt "$(stat -c %s "$TMP/a/checkpoint.safetensors")" ] || fail "convert did not shrink"
"$T2I" gan sample --ckpt "$TMP/inf.safetensors" --n 2 --out "$TMP/si" >/dev/null || fail "sample from converted copy"
mkdir -p "$TMP/ri" && cp "$TMP/inf.safetensors" "$TMP/ri/checkpoint.safetensors"
if "$T2I" gan train --resume --out "$TMP/ri" 2>"$TMP/err"; then fail "resumed from an inference copy"; fi
grep -q "inference copy" "$TMP/err" || fail "inference-copy message: $(cat "$TMP/err")"

# intervals of 0 are refused up front (they were a division by zero)
for f in --sample-every --ckpt-every --log-every; do
  "$T2I" gan train --data fashion-mnist --steps 2 $small $f 0 --out "$TMP/z" 2>"$TMP/err"
  [ $? = 2 ] || fail "gan train $f 0 did not exit 2"
  grep -q -- "$f" "$TMP/err" || fail "$f 0 message: $(cat "$TMP/err")"
  [ ! -e "$TMP/z/checkpoint.safetensors" ] || fail "$f 0 wrote a checkpoint"
done
# so are other out-of-range flags (--steps -1 started a full 12000-step run), before the data loads
for fv in "--steps -1" "--epochs -1" "--ema-start -1" "--seed -1" "--res 40" "--channels 2" "--z-dim 0" \
          "--g-width 100000" "--depth 9"; do
  "$T2I" gan train --data "$TMP/nowhere" $fv --out "$TMP/z" 2>"$TMP/err"
  [ $? = 2 ] || fail "gan train $fv did not exit 2: $(cat "$TMP/err")"
  grep -q -- "${fv% *}" "$TMP/err" || fail "$fv message: $(cat "$TMP/err")"
done

# resume: 2 steps + 2 more == 4 steps
"$T2I" gan train --data fashion-mnist --steps 2 $small --out "$TMP/b" >/dev/null 2>&1 || fail "first half"
"$T2I" gan train --resume --steps 4 --threads 2 --out "$TMP/b" >/dev/null 2>&1 || fail "resume"
cmp -s "$TMP/a/checkpoint.safetensors" "$TMP/b/checkpoint.safetensors" || fail "resumed run differs from uninterrupted run"

# an existing run is not overwritten without --resume
sum=$(md5sum < "$TMP/a/checkpoint.safetensors")
if "$T2I" gan train --data fashion-mnist --steps 2 $small --out "$TMP/a" 2>"$TMP/err"; then fail "overwrote a run"; fi
grep -q "already holds a run" "$TMP/err" || fail "message for an existing run: $(cat "$TMP/err")"
[ "$(md5sum < "$TMP/a/checkpoint.safetensors")" = "$sum" ] || fail "checkpoint changed"

# bad data: empty folder, an unreadable image, too few images
mkdir -p "$TMP/empty"
if "$T2I" gan train --data "$TMP/empty" $small --steps 1 --out "$TMP/r1" 2>"$TMP/err"; then fail "empty folder accepted"; fi
[ "$(wc -l < "$TMP/err")" = 1 ] && grep -q "$TMP/empty" "$TMP/err" || fail "empty folder message: $(cat "$TMP/err")"
mkdir -p "$TMP/bad"
"$T2I" data fashion-mnist --split test --limit 20 --out "$TMP/cls" >/dev/null 2>&1 || fail "export class folders"
cp "$TMP"/cls/*/*.png "$TMP/bad/" 2>/dev/null
echo "not an image" > "$TMP/bad/zz_broken.png"
if "$T2I" gan train --data "$TMP/bad" $small --steps 1 --out "$TMP/r2" 2>"$TMP/err"; then fail "broken image accepted"; fi
grep -q "zz_broken.png" "$TMP/err" || fail "broken image not named: $(cat "$TMP/err")"
[ ! -e "$TMP/r2/checkpoint.safetensors" ] || fail "a checkpoint was written for bad data"

# class folders of mixed sizes are resized; class-conditional training works
"$T2I" gan train --data "$TMP/cls" --res 32 --channels 1 --cond class $small --steps 2 --out "$TMP/c" >/dev/null 2>&1 \
  || fail "class-conditional run on class folders"
"$T2I" gan sample --ckpt "$TMP/c/checkpoint.safetensors" --class 3 --n 2 --out "$TMP/cs" >/dev/null || fail "sample --class"
if "$T2I" gan sample --ckpt "$TMP/c/checkpoint.safetensors" --class 99 --out "$TMP/cs" 2>"$TMP/err"; then fail "class 99 accepted"; fi

# unlabelled data: pseudo-classes from balanced k-means (--clusters); a run with them resumes
# bit-exactly (they are recomputed from the seed) and records them; a folder of 20 images
# is too small for the default (100 images per cluster) and trains unconditionally
mkdir -p "$TMP/flat"
cp "$TMP"/cls/*/*.png "$TMP/flat/"
cl="--data $TMP/flat --res 28 --channels 1 --clusters 4 $small"
"$T2I" gan train $cl --steps 4 --out "$TMP/k4" >/dev/null 2>&1 || fail "clusters run"
"$T2I" gan train $cl --steps 2 --out "$TMP/k2" >/dev/null 2>&1 || fail "clusters half"
"$T2I" gan train --resume --steps 4 --threads 2 --out "$TMP/k2" >/dev/null 2>&1 || fail "clusters resume"
cmp -s "$TMP/k4/checkpoint.safetensors" "$TMP/k2/checkpoint.safetensors" || fail "clusters resume differs"
grep -q '"n_classes":4,.*"cond_classes":true,.*"clusters":4' "$TMP/k4/config.json" || fail "config: $(cat "$TMP/k4/config.json")"
"$T2I" gan sample --ckpt "$TMP/k4/checkpoint.safetensors" --class 3 --n 2 --out "$TMP/k4s" >/dev/null || fail "sample a cluster"
"$T2I" gan train --data "$TMP/flat" --res 28 --channels 1 $small --steps 1 --out "$TMP/k0" >/dev/null 2>&1 || fail "small folder"
grep -q '"n_classes":0,.*"cond_classes":false' "$TMP/k0/config.json" || fail "small folder: $(cat "$TMP/k0/config.json")"
grep -q '"clusters"' "$TMP/k0/config.json" "$TMP/a/config.json" && fail "a run without clusters records them"
# Fashion-MNIST with its labels unused gets the default 10 clusters
"$T2I" gan train --data fashion-mnist --cond none $small --steps 1 --out "$TMP/k10" >"$TMP/out" 2>&1 || fail "cond none"
grep -q "10 balanced k-means clusters" "$TMP/out" || fail "cond none: $(cat "$TMP/out")"
grep -q '"n_classes":10,.*"clusters":10' "$TMP/k10/config.json" || fail "cond none config: $(cat "$TMP/k10/config.json")"
check_error "--clusters must be 0 (none) or at least 2" "$T2I" gan train $cl --clusters 1 --out "$TMP/bad"
check_error "fewer than --clusters 30" "$T2I" gan train $cl --clusters 30 --out "$TMP/bad"
check_error "--clusters: only for --arch dcgan" "$T2I" gan train --data fashion-mnist --cond class --clusters 5 --out "$TMP/bad"
check_error "--clusters: only for --arch dcgan" "$T2I" gan train --data fashion-mnist --arch b1 --clusters 5 --out "$TMP/bad"

# checkpoints of another kind are refused by name
if "$T2I" gan sample --ckpt "$T2I_SOURCE_DIR/tests/data/ops_ref.safetensors" --out "$TMP/x" 2>"$TMP/err"; then
  fail "non-t2i file accepted"; fi
grep -q "not a t2i checkpoint" "$TMP/err" || fail "message: $(cat "$TMP/err")"
if "$T2I" classify eval --ckpt "$TMP/a/checkpoint.safetensors" 2>"$TMP/err"; then fail "GAN accepted as classifier"; fi
grep -q "'gan' checkpoint, expected 'classifier'" "$TMP/err" || fail "message: $(cat "$TMP/err")"
if "$T2I" gan sample --ckpt "$TMP/missing.safetensors" 2>"$TMP/err"; then fail "missing checkpoint accepted"; fi
grep -q "missing.safetensors" "$TMP/err" || fail "missing file not named"
# --init CKPT: one step at lr 1e-7 from a's G and D: within 1e-6 of a's (a fresh model is
# far off); --init's scheme names still mean schemes; refusals: with --resume, a size flag
# that differs, an inference copy (no D)
"$T2I" gan train --data fashion-mnist --init "$TMP/a/checkpoint.safetensors" --steps 1 --lr-g 1e-7 --lr-d 1e-7 \
    --batch 8 --threads 2 --sample-every 1 --out "$TMP/init" >"$TMP/out" 2>"$TMP/err" || fail "gan train --init: $(cat "$TMP/err")"
grep -q "starting from $TMP/a/checkpoint.safetensors" "$TMP/out" || fail "gan train --init: $(cat "$TMP/out")"
grep -q '"init":' "$TMP/init/config.json" || fail "gan train --init: config.json lacks init"
/usr/bin/python3 "$ROOT/tests/helpers/fresh_adam.py" "$TMP/init/checkpoint.safetensors" >/dev/null || fail "gan train --init: the optimizers did not start fresh"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/a/checkpoint.safetensors" "$TMP/init/checkpoint.safetensors" \
    1e-6 --only g.,d. --skip running_ --meta config >/dev/null || fail "gan train --init: G and D are not the checkpoint's"
"$T2I" gan train --data fashion-mnist --steps 1 $small --init normal --seed 9 --out "$TMP/fresh" >/dev/null 2>&1 ||
    fail "gan train --init normal failed"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/fresh/checkpoint.safetensors" "$TMP/init/checkpoint.safetensors" \
    1e-3 --only g.,d. >/dev/null && fail "st_close cannot tell a fresh GAN from a fine-tuned one"
check_error "--init CKPT starts a new run" "$T2I" gan train --init "$TMP/a/checkpoint.safetensors" --resume --out "$TMP/a"
check_error "--g-width 16 does not match" "$T2I" gan train --data fashion-mnist --init "$TMP/a/checkpoint.safetensors" \
    --g-width 16 --out "$TMP/bad"
check_error "inference copy without the discriminator" "$T2I" gan train --data fashion-mnist --init "$TMP/inf.safetensors" \
    --out "$TMP/bad"
# minibatch stddev and augmentation: an unconditional run with both resumes bit-exactly
# (the augmentation draws from the saved generator), keeps both in its files, and samples
aug="--cond none --clusters 0 --mbstd 4 --augment cutout,translation --sample-every 1"
"$T2I" gan train --data fashion-mnist --steps 4 $small $aug --out "$TMP/m4" >/dev/null 2>&1 || fail "mbstd/augment run"
"$T2I" gan train --data fashion-mnist --steps 2 $small $aug --out "$TMP/m2" >/dev/null 2>&1 || fail "mbstd/augment half"
"$T2I" gan train --resume --steps 4 --threads 2 --out "$TMP/m2" >/dev/null 2>&1 || fail "mbstd/augment resume"
cmp -s "$TMP/m4/checkpoint.safetensors" "$TMP/m2/checkpoint.safetensors" || fail "mbstd/augment resume differs"
grep -q '"d_mbstd":4' "$TMP/m4/config.json" || fail "config.json lacks d_mbstd: $(cat "$TMP/m4/config.json")"
grep -q '"augment":"translation,cutout"' "$TMP/m4/config.json" || fail "config.json lacks augment"
grep -q '"d_mbstd"\|"augment"' "$TMP/a/config.json" && fail "a run without --mbstd/--augment writes d_mbstd or augment"
"$T2I" gan sample --ckpt "$TMP/m4/checkpoint.safetensors" --n 4 --out "$TMP/m4s" >/dev/null 2>&1 || fail "sample an mbstd GAN"
check_error "--augment must be none or a comma list" "$T2I" gan train --data fashion-mnist --augment flip --out "$TMP/bad"
check_error "not whole groups of 3 for --mbstd" "$T2I" gan train --data fashion-mnist --mbstd 3 --batch 8 --out "$TMP/bad"
check_error "--arch b1 is fixed" "$T2I" gan train --data fashion-mnist --arch b1 --mbstd 4 --out "$TMP/bad"
# bad flag values are refused, not clamped
if "$T2I" gan train --lr-g -1 --out "$TMP/r3" 2>"$TMP/err"; then fail "negative lr accepted"; fi
grep -q -- "--lr-g" "$TMP/err" || fail "bad lr message"
finish
