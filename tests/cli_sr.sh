#!/bin/bash
# cli_sr.sh - `t2i sr` end to end on a tiny model and a temporary folder of small PNGs.
# Usage: bash tests/cli_sr.sh PATH/TO/t2i   (CTest runs it from tests/)
# Checks: a short run through both phases (L1, then GAN) writes the run folder
# (config.json, metrics.jsonl with both phases and validation lines, checkpoint,
# l1.safetensors, samples); GAN-only fine-tuning of that L1 model (--init-from, --steps 0)
# starts from it unchanged; feature matching (--fm-weight) is logged, survives a resume and
# changes G's training; D's warm-up (--d-warmup) leaves G's EMA as it was; with --d-steps 2
# G learns on every other step and a resume between them ends as the uninterrupted run; a run stopped
# with --stop-after in phase 1 and again in phase 2
# and resumed twice ends with a checkpoint byte-identical to the uninterrupted run's;
# upscale writes an image scale times larger (tiled and untiled identical here); eval
# prints PSNR/SSIM lines and one JSON line (a flat photo, which bicubic reproduces exactly, left
# out with a note); several --data folders (recursive, a WebP, a
# link loop) with a --holdout folder and --degrade mix record their file lists in
# config.json, resume bit for bit and refuse a changed list; --degrade bicubic is the
# default byte for byte; compare writes the side-by-side strip; bad
# inputs (empty folder, missing folder, unknown package, bad --degrade, missing or non-SR checkpoint, an existing run
# without --resume, --init-from a different architecture, bad flags) exit non-zero with one "t2i: ..." line on stderr.
source "$(dirname "$0")/lib.sh"
IMG=$ROOT/tests/data/img
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# a bad input: non-zero exit, one line on stderr starting with "t2i: " and holding PATTERN
expect_error() { # DESCRIPTION PATTERN COMMAND...
    local what=$1 pat=$2
    shift 2
    "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    [ $rc -ne 0 ] || fail "$what: exit 0"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$what: expected one stderr line, got: $(cat "$TMP/err")"
    grep -q "^t2i: .*$pat" "$TMP/err" || fail "$what: message '$(cat "$TMP/err")' lacks '$pat'"
}

if ! "$T2I" sr --help >/dev/null 2>&1; then
    echo "FAIL: '$T2I sr' is not available (sr_cmd must be registered in cli/main.c)"
    exit 1
fi

# six photos: sorted index 5 (f.png) is held out
mkdir -p "$TMP/photos" "$TMP/empty"
cp "$IMG/clip_src_300x200.png" "$TMP/photos/a.png"
cp "$IMG/rs_src_rgb64.png" "$TMP/photos/b.png"
cp "$IMG/clip_out_224.png" "$TMP/photos/c.png"
cp "$IMG/png_rgb8.png" "$TMP/photos/d.png"
cp "$IMG/rs_src_rgb64.png" "$TMP/photos/e.png"
cp "$IMG/clip_src_300x200.png" "$TMP/photos/f.png"

TRAIN=(--data "$TMP/photos" --scale 2 --preset custom --width 8 --blocks 1 --crop 32 --batch 2 --d-width 8
       --steps 3 --gan-steps 2 --val-every 2 --ckpt-every 100 --log-every 1 --seed 7 --threads 2)

# one uninterrupted run
out=$("$T2I" sr train "${TRAIN[@]}" --out "$TMP/runA" 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "train: exit $rc: $(cat "$TMP/err")"
for f in config.json metrics.jsonl checkpoint.safetensors l1.safetensors samples/latest.png; do
    [ -s "$TMP/runA/$f" ] || fail "train: $f missing"
done
grep -q '"phase":1,"loss_l1"' "$TMP/runA/metrics.jsonl" || fail "metrics: no phase-1 lines"
grep -q '"phase":2,"loss_l1":[0-9.]*,"loss_g_adv"' "$TMP/runA/metrics.jsonl" || fail "metrics: no phase-2 lines"
grep -q '"val_psnr"' "$TMP/runA/metrics.jsonl" || fail "metrics: no validation lines"
[ "$(grep -c '"loss_l1"' "$TMP/runA/metrics.jsonl")" -eq 5 ] || fail "metrics: expected 5 step lines"
grep -q '1 held out' <<<"$out" || fail "train: the held-out photo is not reported: $out"

# the same run, stopped in phase 1 and in phase 2, resumed each time
"$T2I" sr train "${TRAIN[@]}" --out "$TMP/runB" --stop-after 2 >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ] || fail "stop-after 2: exit $rc: $(cat "$TMP/err")"
grep -q 'stopped at step 2' "$TMP/err" || fail "stop-after 2: no message"
[ -e "$TMP/runB/l1.safetensors" ] && fail "stop-after 2: l1.safetensors written before phase 1 ended"
"$T2I" sr train --out "$TMP/runB" --resume --stop-after 4 >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ] || fail "resume to 4: exit $rc: $(cat "$TMP/err")"
"$T2I" sr train --out "$TMP/runB" --resume >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ] || fail "resume to the end: exit $rc: $(cat "$TMP/err")"
cmp -s "$TMP/runA/checkpoint.safetensors" "$TMP/runB/checkpoint.safetensors" \
    || fail "resumed run's checkpoint differs from the uninterrupted run's"
cmp -s "$TMP/runA/l1.safetensors" "$TMP/runB/l1.safetensors" || fail "resumed run's l1.safetensors differs"

# GAN fine-tuning only, from the L1 model of run A: l1.safetensors is that model, unchanged
SMALL=(--data "$TMP/photos" --scale 2 --preset custom --width 8 --blocks 1 --crop 32 --batch 2 --d-width 8 --threads 2)
"$T2I" sr train "${SMALL[@]}" --steps 0 --gan-steps 1 --init-from "$TMP/runA/l1.safetensors" --out "$TMP/runG" \
    >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ] || fail "--init-from: exit $rc: $(cat "$TMP/err")"
cmp -s "$TMP/runA/l1.safetensors" "$TMP/runG/l1.safetensors" || fail "--init-from: the starting model was not kept as is"
grep -q '"phase":2' "$TMP/runG/metrics.jsonl" || fail "--init-from: no phase-2 step"
# feature matching (--fm-weight) after a step of D alone (--d-warmup 1): in the metrics, kept
# by a resumed run (stopped in phase 2, it ends as the uninterrupted one), changing G's
# training; phase 1 untouched; ranges checked. D's warm-up over all of phase 2: G's EMA is
# still the L1 model bit for bit, and the adversarial terms are 0
"$T2I" sr train "${TRAIN[@]}" --d-warmup 2 --out "$TMP/runDW" >/dev/null 2>"$TMP/err" ||
    fail "--d-warmup: $(cat "$TMP/err")"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/runDW/l1.safetensors" "$TMP/runDW/checkpoint.safetensors" \
    1e-30 --only ema. >/dev/null || fail "--d-warmup: G's EMA moved while D warmed up"
zero='"phase":2,"loss_l1":[0-9.]*,"loss_g_adv":0.00000,"loss_fm":0.00000'
[ "$(grep -c "$zero" "$TMP/runDW/metrics.jsonl")" -eq 2 ] ||
    fail "--d-warmup: expected 2 phase-2 lines without G's losses"
"$T2I" sr train "${TRAIN[@]}" --d-warmup 1 --fm-weight 0.5 --out "$TMP/runFM" >/dev/null 2>"$TMP/err" ||
    fail "--fm-weight: $(cat "$TMP/err")"
grep -q '"phase":2,.*"loss_fm":0\.0*[1-9]' "$TMP/runFM/metrics.jsonl" ||
    fail "--fm-weight: no feature matching in the metrics"
grep -q '"loss_fm":0\.00000' "$TMP/runA/metrics.jsonl" || fail "metrics: loss_fm is not 0 without --fm-weight"
"$T2I" sr train "${TRAIN[@]}" --d-warmup 1 --fm-weight 0.5 --out "$TMP/runFM2" --stop-after 4 >/dev/null 2>&1 ||
    fail "--fm-weight: stop-after failed"
"$T2I" sr train --out "$TMP/runFM2" --resume >/dev/null 2>"$TMP/err" || fail "--fm-weight: resume: $(cat "$TMP/err")"
cmp -s "$TMP/runFM/checkpoint.safetensors" "$TMP/runFM2/checkpoint.safetensors" \
    || fail "--fm-weight: the resumed run differs from the uninterrupted one"
cmp -s "$TMP/runA/l1.safetensors" "$TMP/runFM/l1.safetensors" || fail "--fm-weight: phase 1 changed"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/runA/checkpoint.safetensors" \
    "$TMP/runFM/checkpoint.safetensors" 1e-7 --only g. >/dev/null && fail "--fm-weight: G trained exactly as without it"
# several D steps per G step (--d-steps 2 after one warm-up step, 5 phase-2 steps): G's
# losses appear on the 3rd and 5th steps only (D, D, G, D, G); stopped after a step of D
# alone and resumed, the run ends as the uninterrupted one
DS=(--gan-steps 5 --d-warmup 1 --d-steps 2)
"$T2I" sr train "${TRAIN[@]}" "${DS[@]}" --out "$TMP/runDS" >/dev/null 2>"$TMP/err" || fail "--d-steps: $(cat "$TMP/err")"
pattern=$(grep '"phase":2,"loss_l1"' "$TMP/runDS/metrics.jsonl" | sed 's/.*"loss_g_adv":\([0-9.]*\).*/\1/' |
    while read -r v; do [ "$v" = 0.00000 ] && printf D || printf G; done)
[ "$pattern" = DDGDG ] || fail "--d-steps 2: G updated on the steps $pattern, expected DDGDG"
"$T2I" sr train "${TRAIN[@]}" "${DS[@]}" --out "$TMP/runDS2" --stop-after 5 >/dev/null 2>&1 ||
    fail "--d-steps: stop-after failed"
"$T2I" sr train --out "$TMP/runDS2" --resume >/dev/null 2>"$TMP/err" || fail "--d-steps: resume: $(cat "$TMP/err")"
cmp -s "$TMP/runDS/checkpoint.safetensors" "$TMP/runDS2/checkpoint.safetensors" \
    || fail "--d-steps: the resumed run differs from the uninterrupted one"
for bad in "--fm-weight -1" "--d-warmup -1" "--d-steps 0"; do
    "$T2I" sr train "${SMALL[@]}" $bad --out "$TMP/runFMbad" >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc -eq 2 ] && grep -q -- "${bad% *}" "$TMP/err" || fail "$bad: exit $rc: $(cat "$TMP/err")"
done
# --init CKPT: one step at lr 1e-7 from run A's G and D (its architecture, no size flags):
# within 1e-6 of them (a fresh model is far off); refusals: with --resume, with --init-from,
# a size flag that differs
"$T2I" sr train --data "$TMP/photos" --init "$TMP/runA/checkpoint.safetensors" --steps 1 --gan-steps 0 --lr 1e-7 --lr-min -1 \
    --batch 2 --threads 2 --out "$TMP/runI" >"$TMP/out" 2>"$TMP/err" || fail "sr train --init: $(cat "$TMP/err")"
grep -q "starting from $TMP/runA/checkpoint.safetensors (G, D and EMA)" "$TMP/out" || fail "sr train --init: $(cat "$TMP/out")"
/usr/bin/python3 "$ROOT/tests/helpers/fresh_adam.py" "$TMP/runI/checkpoint.safetensors" >/dev/null || fail "sr train --init: the optimizers did not start fresh"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/runA/checkpoint.safetensors" "$TMP/runI/checkpoint.safetensors" \
    1e-6 --only g.,d. --skip running_ --meta config >/dev/null || fail "sr train --init: G and D are not the checkpoint's"
"$T2I" sr train "${SMALL[@]}" --steps 1 --gan-steps 0 --init pytorch --seed 9 --out "$TMP/runFresh" >/dev/null 2>&1 ||
    fail "sr train --init pytorch failed"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/runFresh/checkpoint.safetensors" "$TMP/runI/checkpoint.safetensors" \
    1e-3 --only g. >/dev/null && fail "st_close cannot tell a fresh SR model from the fine-tuned one"
check_error "--init CKPT starts a new run" "$T2I" sr train --init "$TMP/runA/checkpoint.safetensors" --resume --out "$TMP/runA"
check_error "not both" "$T2I" sr train --data "$TMP/photos" --init "$TMP/runA/checkpoint.safetensors" \
    --init-from "$TMP/runA/l1.safetensors" --out "$TMP/runX"
check_error "--width 16 does not match" "$T2I" sr train --data "$TMP/photos" --init "$TMP/runA/checkpoint.safetensors" \
    --width 16 --out "$TMP/runX"

# refusing to overwrite a run
"$T2I" sr train "${TRAIN[@]}" --out "$TMP/runA" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -ne 0 ] || fail "existing run without --resume: exit 0"
grep -q -- '--resume' "$TMP/err" || fail "existing run: message does not mention --resume"

# upscale (tiled == untiled is tested in test_sr.c, in floats)
"$T2I" sr upscale --ckpt "$TMP/runA/checkpoint.safetensors" --quiet "$IMG/rs_src_rgb64.png" "$TMP/up.png" 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ] || fail "upscale: exit $rc: $(cat "$TMP/err")"
"$T2I" sr upscale --ckpt "$TMP/runA/l1.safetensors" --tile 0 --quiet "$IMG/rs_src_rgb64.png" "$TMP/up_l1.png" || fail "upscale l1"
"$T2I" sr upscale --ckpt "$TMP/runA/checkpoint.safetensors" --tile 20 --overlap 4 --quiet "$IMG/rs_src_rgb64.png" \
    "$TMP/up_t.png" 2>"$TMP/err" || fail "upscale tiled"
grep -q 'below the receptive radius' "$TMP/err" || fail "upscale: no note about a small overlap"
sz=$(head -c 24 "$TMP/up.png" | tail -c 8 | od -An -tu1 | tr -s ' ')
[ "$sz" = " 0 0 0 128 0 0 0 128" ] || fail "upscale: output is not 128x128 (IHDR bytes:$sz)"

# eval: the held-out photo (f.png); JSON line last
out=$("$T2I" sr eval --ckpt "$TMP/runA/checkpoint.safetensors" --data "$TMP/photos" --scale 2 --crop 0 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "eval: exit $rc: $(cat "$TMP/err")"
grep -q '^f.png (300x200)' <<<"$out" || fail "eval: no line for the held-out f.png: $out"
tail -1 <<<"$out" | grep -q '^{"eval":"sr","scale":2,"images":1,"split":"heldout"' || fail "eval: bad JSON line: $(tail -1 <<<"$out")"
out=$("$T2I" sr eval --ckpt "$TMP/runA/checkpoint.safetensors" --data "$TMP/photos" --split all --crop 64 2>&1); rc=$?
[ $rc -eq 0 ] || fail "eval --split all: exit $rc"
grep -q '"images":6' <<<"$out" || fail "eval --split all: not 6 images"
# a flat photo (bicubic reproduces it exactly: infinite PSNR) is left out of the means with a
# note, never averaged in as inf; a folder of flat photos only is an error
mkdir -p "$TMP/flat" "$TMP/flatonly"
{ printf 'P6\n64 48\n255\n'; head -c $((64 * 48 * 3)) /dev/zero | tr '\0' '\200'; } >"$TMP/flatonly/grey.ppm"
cp "$TMP/flatonly/grey.ppm" "$TMP/flat/a_grey.ppm"
cp "$TMP/photos/a.png" "$TMP/flat/b.png"
out=$("$T2I" sr eval --ckpt "$TMP/runA/checkpoint.safetensors" --data "$TMP/flat" --split all --crop 0 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "eval with a flat photo: exit $rc: $(cat "$TMP/err")"
tail -1 <<<"$out" | grep -q '"images":1,' || fail "eval with a flat photo: not 1 image: $(tail -1 <<<"$out")"
grep -qi 'inf' <<<"$out" && fail "eval with a flat photo: an infinite figure: $out"
grep -q 'a_grey.ppm: bicubic reproduces the 64x48 region exactly' "$TMP/err" || fail "eval: no note for the flat photo: $(cat "$TMP/err")"
# only flat photos: the note, then the one error line
"$T2I" sr eval --ckpt "$TMP/runA/checkpoint.safetensors" --data "$TMP/flatonly" --split all --crop 0 \
    >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "eval flat photos only: exit $rc"
msg="t2i: $TMP/flatonly: the 1 image is too small or flat (reproduced exactly by bicubic at x2): nothing to compare"
grep -v '^t2i: note: ' "$TMP/err" | grep -qxF "$msg" && [ "$(grep -vc '^t2i: note: ' "$TMP/err")" -eq 1 ] ||
    fail "eval flat photos only: $(cat "$TMP/err")"

# several folders (one walked recursively, with a WebP photo and a symbolic-link loop), a
# held-out folder, --degrade mix: the lists in config.json, the held-out count, a resume that
# refuses a changed list and otherwise continues bit for bit
mkdir -p "$TMP/photos2/sub" "$TMP/held"
cp "$IMG/webp_lossless_rgb_48x40.webp" "$TMP/photos2/sub/w.webp"
cp "$IMG/rs_src_rgb64.png" "$TMP/photos2/g.png"
ln -s "$TMP/photos2" "$TMP/photos2/sub/loop"
cp "$IMG/clip_out_224.png" "$TMP/held/h1.png"
cp "$IMG/rs_src_rgb64.png" "$TMP/held/h2.png"
MULTI=(--data "$TMP/photos" --data "$TMP/photos2" --holdout "$TMP/held" --degrade mix --scale 2 --preset custom
       --width 8 --blocks 1 --crop 32 --batch 2 --steps 4 --val-every 2 --ckpt-every 100 --log-every 1 --seed 7 --threads 2)
out=$("$T2I" sr train "${MULTI[@]}" --out "$TMP/runM" 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "multi-folder train: exit $rc: $(cat "$TMP/err")"
grep -q '7 training photos, 2 held out' <<<"$out" || fail "multi-folder train: counts: $out"
python3 - "$TMP" <<'PY' || fail "multi-folder config.json lists"
import json, sys
t = sys.argv[1]
c = json.load(open(t + "/runM/config.json"))
want_train = [t + "/photos/%s.png" % n for n in "abcdef"]
want_train += [t + "/photos2/g.png", t + "/photos2/sub/w.webp"]
assert c["train_files"] == want_train, c["train_files"]
assert c["heldout_files"] == [t + "/held/h1.png", t + "/held/h2.png"], c["heldout_files"]
assert c["train"]["degrade"] == "mix" and c["train"]["holdout_dirs"] == t + "/held", c["train"]
PY
"$T2I" sr train "${MULTI[@]}" --out "$TMP/runN" --stop-after 2 >/dev/null 2>"$TMP/err" || fail "multi stop-after: $(cat "$TMP/err")"
cp "$IMG/rs_src_rgb64.png" "$TMP/photos2/new.png"
expect_error_early() {
    "$@" >/dev/null 2>"$TMP/err" && fail "resume with a changed list: exit 0"
    grep -q "^t2i: sr train --resume: the training files changed since the run started: .*new.png" "$TMP/err" \
        || fail "resume with a changed list: $(cat "$TMP/err")"
}
expect_error_early "$T2I" sr train --out "$TMP/runN" --resume --threads 2
rm "$TMP/photos2/new.png"
"$T2I" sr train --out "$TMP/runN" --resume --threads 2 >/dev/null 2>"$TMP/err" || fail "multi resume: $(cat "$TMP/err")"
cmp -s "$TMP/runM/checkpoint.safetensors" "$TMP/runN/checkpoint.safetensors" \
    || fail "--degrade mix: the resumed run's checkpoint differs from the uninterrupted run's"
out=$("$T2I" sr eval --ckpt "$TMP/runM/checkpoint.safetensors" --data "$TMP/photos" --data "$TMP/photos2" \
      --holdout "$TMP/held" --crop 64 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "eval --holdout: exit $rc: $(cat "$TMP/err")"
grep -q '^h1.png' <<<"$out" && grep -q '^h2.png' <<<"$out" && grep -q '"images":2' <<<"$out" \
    || fail "eval --holdout: not the two held-out photos: $out"
# --degrade bicubic is the old path byte for byte; mix is not
"$T2I" sr train "${TRAIN[@]}" --degrade bicubic --out "$TMP/runD" >/dev/null 2>"$TMP/err" || fail "bicubic: $(cat "$TMP/err")"
cmp -s "$TMP/runA/checkpoint.safetensors" "$TMP/runD/checkpoint.safetensors" || fail "--degrade bicubic differs from the default"
cmp -s "$TMP/runA/config.json" "$TMP/runD/config.json" || fail "--degrade bicubic: config.json differs from the default's"
"$T2I" sr train "${TRAIN[@]}" --degrade mix --out "$TMP/runX" >/dev/null 2>"$TMP/err" || fail "mix: $(cat "$TMP/err")"
cmp -s "$TMP/runA/checkpoint.safetensors" "$TMP/runX/checkpoint.safetensors" && fail "--degrade mix trained like bicubic"

# compare
out=$("$T2I" sr compare --image "$IMG/clip_src_300x200.png" --ckpt "$TMP/runA/l1.safetensors" \
      "$TMP/runA/checkpoint.safetensors" --size 64 --out "$TMP/cmp.png" 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "compare: exit $rc: $(cat "$TMP/err")"
[ "$(grep -c 'PSNR' <<<"$out")" -eq 3 ] || fail "compare: expected 3 PSNR lines: $out"
[ -s "$TMP/cmp.png" ] || fail "compare: no image"

# bad inputs (expect_error, defined at the top)
expect_error "empty folder" "$TMP/empty: no image files" "$T2I" sr train --data "$TMP/empty" --out "$TMP/runE"
expect_error "missing folder" "$TMP/nope: cannot open folder" "$T2I" sr train --data "$TMP/nope" --out "$TMP/runF"
expect_error "missing checkpoint" "$TMP/none.safetensors" "$T2I" sr upscale --ckpt "$TMP/none.safetensors" "$IMG/rs_src_rgb64.png" "$TMP/x.png"
expect_error "non-SR checkpoint" "st_ref.safetensors: not a t2i checkpoint" \
    "$T2I" sr upscale --ckpt "$ROOT/tests/data/st_ref.safetensors" "$IMG/rs_src_rgb64.png" "$TMP/x.png"
expect_error "eval non-SR checkpoint" "st_ref.safetensors" "$T2I" sr eval --ckpt "$ROOT/tests/data/st_ref.safetensors" --data "$TMP/photos"
expect_error "resume an inference checkpoint" "inference-only" \
    bash -c "mkdir -p '$TMP/runI' && cp '$TMP/runA/l1.safetensors' '$TMP/runI/checkpoint.safetensors' && '$T2I' sr train --out '$TMP/runI' --resume"
expect_error "eval wrong scale" "upscales x2" "$T2I" sr eval --ckpt "$TMP/runA/l1.safetensors" --data "$TMP/photos" --scale 4
mkdir -p "$TMP/few" && cp "$IMG/rs_src_rgb64.png" "$TMP/few/"
expect_error "eval no held-out" "no heldout images" "$T2I" sr eval --ckpt "$TMP/runA/l1.safetensors" --data "$TMP/few"
expect_error "missing input image" "$TMP/missing.png" "$T2I" sr upscale --ckpt "$TMP/runA/l1.safetensors" "$TMP/missing.png" "$TMP/x.png"
expect_error "--init-from another architecture" "width-8" "$T2I" sr train --data "$TMP/photos" --scale 2 --preset custom \
    --width 16 --crop 32 --init-from "$TMP/runA/l1.safetensors" --out "$TMP/runW"
expect_error "bad degrade" "--degrade must be bicubic or mix, got 'gauss'" "$T2I" sr train --data "$TMP/photos" --degrade gauss --out "$TMP/runDG"
expect_error "unknown package" "--package no-such-pkg-t2i: not an installed Debian package" \
    "$T2I" sr train --package no-such-pkg-t2i --out "$TMP/runP"
expect_error "only held-out" "no training images" "$T2I" sr train --holdout "$TMP/held" --scale 2 --crop 32 --out "$TMP/runH"
expect_error "bad scale" "scale must be 2 or 4" "$T2I" sr train --data "$TMP/photos" --scale 3 --out "$TMP/runS"
expect_error "narrow interp" "needs --width >= 6" "$T2I" sr train --data "$TMP/photos" --preset custom --width 4 --out "$TMP/runW"
expect_error "crop too large" "no training images of at least 512x512" \
    "$T2I" sr train --data "$TMP/photos" --scale 2 --crop 512 --out "$TMP/runC"
"$T2I" sr upscale >/dev/null 2>&1 && fail "upscale without arguments: exit 0"
# the output is checked before the model runs: PNG name, existing folder, not a folder
mkdir -p "$TMP/folder.png"
for o in "$TMP/up.jpg:must end in .png" "$TMP/nope/up.png:does not exist" "$TMP/folder.png:not a regular file"; do
    expect_error "upscale to ${o%%:*}" "${o#*:}" "$T2I" sr upscale --ckpt "$TMP/runA/checkpoint.safetensors" \
        "$IMG/rs_src_rgb64.png" "${o%%:*}"
done

finish
