#!/bin/bash
# cli_vq.sh - `t2i vq train|encode|decode|eval` end to end on a tiny model and a few FC32
# items: the run folder's files, resume giving a checkpoint byte-identical to an
# uninterrupted run, refusal to overwrite a run, encode -> decode -> eval outputs, an
# image folder as data, and one-line errors with a non-zero exit on bad input (missing
# checkpoint, a GAN checkpoint given as --ckpt, an empty folder, a file without codes,
# sizes that the b5 preset forbids).
# Usage: bash tests/cli_vq.sh PATH/TO/t2i   (needs Debian's dataset-fashion-mnist)
source "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} T2I_PROGRESS_SECONDS=1000

# a tiny custom model on 64 FC32 items; restarts every 2 steps so that resume must carry
# the RNG, the codebook buffers and the loader position
TINY=(--preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 --code-dim 8 --codes 32
      --limit 64 --batch 8 --restart-every 2 --restart-threshold 1 --log-every 1 --sample-every 3 --seed 5)

# ---- train 6 steps
if ! "$T2I" vq train "${TINY[@]}" --steps 6 --ckpt-every 3 --out "$TMP/a" >"$TMP/out" 2>"$TMP/err"; then
    fail "vq train exited non-zero: $(cat "$TMP/err")"
fi
for f in checkpoint.safetensors config.json metrics.jsonl recon/step_000003.png recon/step_000006.png recon/latest.png; do
    [ -s "$TMP/a/$f" ] || fail "run folder lacks $f"
done
is_png "$TMP/a/recon/latest.png" || fail "latest.png is not a PNG"
[ "$(wc -l <"$TMP/a/metrics.jsonl")" -eq 6 ] || fail "metrics.jsonl has $(wc -l <"$TMP/a/metrics.jsonl") lines, expected 6"
for key in loss recon commit perplexity codes_used psnr; do
    grep -q "\"$key\":" "$TMP/a/metrics.jsonl" || fail "metrics.jsonl lacks $key"
done
head -n1 "$TMP/a/metrics.jsonl" | grep -q '"restarted":32' || fail "step 1 did not initialise all 32 codes: $(head -n1 "$TMP/a/metrics.jsonl")"
grep -q '"preset":"custom"' "$TMP/a/config.json" || fail "config.json lacks the model config"

# ---- 3 steps, then resume to 6: the same checkpoint bytes
"$T2I" vq train "${TINY[@]}" --steps 3 --ckpt-every 3 --out "$TMP/b" >/dev/null 2>"$TMP/err" || fail "train 3 steps: $(cat "$TMP/err")"
"$T2I" vq train --resume --steps 6 --out "$TMP/b" >/dev/null 2>"$TMP/err" || fail "resume: $(cat "$TMP/err")"
cmp -s "$TMP/a/checkpoint.safetensors" "$TMP/b/checkpoint.safetensors" ||
    fail "3 + resumed 3 steps differ from 6 uninterrupted steps"
[ "$(wc -l <"$TMP/b/metrics.jsonl")" -eq 6 ] || fail "resumed run's metrics.jsonl does not have 6 lines"

# ---- --min-lr: the lr of step s (1-based) is the cosine from --lr to --min-lr at (s-1)/steps;
# without it the lr stays --lr
"$T2I" vq train "${TINY[@]}" --steps 5 --lr 1e-3 --min-lr 1e-4 --out "$TMP/cos" >/dev/null 2>"$TMP/err" ||
    fail "vq train --min-lr: $(cat "$TMP/err")"
/usr/bin/python3 - "$TMP/cos/metrics.jsonl" "$TMP/a/metrics.jsonl" <<'PY' || fail "vq train --min-lr: the learning rates are not the cosine's"
import json, math, sys
cos = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in cos] == [1, 2, 3, 4, 5], cos
for r in cos:
    want = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (r["step"] - 1) / 5))
    assert abs(r["lr"] - want) < 1e-3 * want, (r["step"], r["lr"], want)
assert all(json.loads(l)["lr"] == 3e-4 for l in open(sys.argv[2]))
PY
grep -q '"min_lr":0.0001' "$TMP/cos/config.json" || fail "vq train --min-lr: config.json lacks min_lr"
check_error "--min-lr" "$T2I" vq train "${TINY[@]}" --steps 5 --lr 1e-3 --min-lr 2e-3 --out "$TMP/badcos"

# ---- errors: exactly one stderr line naming the problem, non-zero exit
check_error "--resume" "$T2I" vq train "${TINY[@]}" --steps 6 --out "$TMP/a"
check_error "preset custom" "$T2I" vq train --preset b5 --codes 100 --out "$TMP/bad"
check_error "no checkpoint to resume" "$T2I" vq train --resume --out "$TMP/none"

CK=$TMP/a/checkpoint.safetensors
# ---- --init: one step at lr 1e-7 from a's weights: the encoder and decoder stay a's to
# within 1e-6; the codebook moves by the EMA's 1% only (the first step's restart of every
# code, which a new model does, would replace it); a fresh model is far from a
if ! "$T2I" vq train --init "$CK" --limit 64 --batch 8 --restart-every 0 --lr 1e-7 --steps 1 --sample-every 1 \
    --out "$TMP/init" >"$TMP/out" 2>"$TMP/err"; then
    fail "vq train --init exited non-zero: $(cat "$TMP/err")"
fi
grep -q "starting from $CK" "$TMP/out" || fail "vq train --init: $(cat "$TMP/out")"
grep -q '"init":' "$TMP/init/config.json" || fail "vq train --init: config.json lacks init"
/usr/bin/python3 "$ROOT/tests/helpers/fresh_adam.py" "$TMP/init/checkpoint.safetensors" >/dev/null || fail "vq train --init: the optimizer did not start fresh"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$CK" "$TMP/init/checkpoint.safetensors" 1e-6 --skip vq. \
    --meta config >/dev/null || fail "vq train --init: the weights are not the checkpoint's"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$CK" "$TMP/init/checkpoint.safetensors" 0.05 --only vq.codebook \
    >/dev/null || fail "vq train --init: the codebook was replaced"
"$T2I" vq train "${TINY[@]}" --steps 1 --seed 9 --out "$TMP/fresh" >/dev/null 2>&1 || fail "vq train 1 step failed"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/fresh/checkpoint.safetensors" "$TMP/init/checkpoint.safetensors" \
    1e-3 --skip vq. >/dev/null && fail "st_close cannot tell a fresh VQ from a fine-tuned one"
check_error "--init starts a new run" "$T2I" vq train --init "$CK" --resume --out "$TMP/a"
# ---- --decoder-only: 3 steps at a large lr with restarts due every step: the encoder and
# the codebook (and its EMA buffers) stay bit for bit (difference below 1e-30), the decoder moves
"$T2I" vq train --init "$CK" --decoder-only --limit 64 --batch 8 --restart-every 1 --lr 1e-2 --steps 3 \
    --out "$TMP/deconly" >/dev/null 2>"$TMP/err" || fail "vq train --decoder-only: $(cat "$TMP/err")"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$CK" "$TMP/deconly/checkpoint.safetensors" 1e-30 --only enc.,vq. \
    >/dev/null || fail "vq train --decoder-only: the encoder or the codebook changed"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$CK" "$TMP/deconly/checkpoint.safetensors" 1e-4 --only dec. \
    >/dev/null && fail "vq train --decoder-only: the decoder did not move"
"$T2I" vq train --resume --steps 4 --out "$TMP/deconly" >/dev/null 2>"$TMP/err" || fail "vq train --decoder-only resume: $(cat "$TMP/err")"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$CK" "$TMP/deconly/checkpoint.safetensors" 1e-30 --only enc.,vq. \
    >/dev/null || fail "vq train --decoder-only: the resumed run changed the encoder or the codebook"
check_error "give it with --init" "$T2I" vq train "${TINY[@]}" --decoder-only --steps 1 --out "$TMP/bad"
check_error "option of a new run" "$T2I" vq train --resume --decoder-only --out "$TMP/deconly"
check_error "--width1 16 does not match" "$T2I" vq train --init "$CK" --preset custom --width1 16 --out "$TMP/bad"
# ---- encode 20 test items
"$T2I" vq encode --ckpt "$CK" --data fashion-captions:test --limit 20 --out "$TMP/codes.safetensors" >"$TMP/out" 2>"$TMP/err" ||
    fail "vq encode: $(cat "$TMP/err")"
[ -s "$TMP/codes.safetensors" ] || fail "no codes file"
grep -q "images/s" "$TMP/out" || fail "encode does not report images/s: $(cat "$TMP/out")"
for s in '"codes":{"dtype":"I32","shape":\[20,8,8\]' '"index":{"dtype":"I32","shape":\[20\]' '"source":"fashion-captions:test"' \
    '"vq":"'"$CK"'"' '"config":"{'; do
    head -c 4096 "$TMP/codes.safetensors" | tr -d '\000' | grep -q "$s" || fail "codes file header lacks $s"
done

# ---- decode items 5..8
"$T2I" vq decode --ckpt "$CK" --codes "$TMP/codes.safetensors" --first 5 --n 4 --out "$TMP/dec" >"$TMP/out" 2>"$TMP/err" ||
    fail "vq decode: $(cat "$TMP/err")"
for f in 00005.png 00006.png 00007.png 00008.png grid.png; do
    [ -s "$TMP/dec/$f" ] || fail "decode did not write $f"
done
[ ! -e "$TMP/dec/00009.png" ] || fail "decode --n 4 wrote a fifth image"
is_png "$TMP/dec/00005.png" || fail "00005.png is not a PNG"

# ---- eval
"$T2I" vq eval --ckpt "$CK" --data fashion-captions:test --limit 16 >"$TMP/out" 2>"$TMP/err" || fail "vq eval: $(cat "$TMP/err")"
tail -n1 "$TMP/out" | grep -q '"psnr":[0-9]' || fail "eval's JSON lacks psnr: $(tail -n1 "$TMP/out")"
tail -n1 "$TMP/out" | grep -q '"perplexity":' || fail "eval's JSON lacks perplexity"
tail -n1 "$TMP/out" | grep -q '"images":16' || fail "eval did not use 16 images"

# ---- an image folder as data (the decoded PNGs)
"$T2I" vq encode --ckpt "$CK" --data "$TMP/dec" --out "$TMP/codes2.safetensors" >/dev/null 2>"$TMP/err" ||
    fail "vq encode of a folder: $(cat "$TMP/err")"
# (the 4 decoded images; the folder's grid.png is an overview, not an item)
head -c 4096 "$TMP/codes2.safetensors" | tr -d '\000' | grep -q '"codes":{"dtype":"I32","shape":\[4,8,8\]' ||
    fail "folder of 4 images (and grid.png) did not give 4 code grids"

# ---- bad inputs
check_error "none.safetensors" "$T2I" vq encode --ckpt "$TMP/none.safetensors" --out "$TMP/x.safetensors"
mkdir -p "$TMP/empty"
check_error "no images" "$T2I" vq encode --ckpt "$CK" --data "$TMP/empty" --out "$TMP/x.safetensors"
check_error "no images" "$T2I" vq train --data "$TMP/empty" --out "$TMP/bad"
# a GAN checkpoint (metadata only is enough for the type check)
H='{"__metadata__":{"format":"t2i","model":"gan","config":"{}"}}'
while (( ${#H} % 8 )); do H="$H "; done
{
    n=${#H}
    for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(( (n >> (8 * i)) & 255 )))"; done
    printf '%s' "$H"
} >"$TMP/gan.safetensors"
check_error "'gan' checkpoint" "$T2I" vq encode --ckpt "$TMP/gan.safetensors" --out "$TMP/x.safetensors"
check_error "'gan' checkpoint" "$T2I" vq eval --ckpt "$TMP/gan.safetensors"
check_error "no tensor 'codes'" "$T2I" vq decode --ckpt "$CK" --codes "$CK" --out "$TMP/bad"
check_error "--first" "$T2I" vq decode --ckpt "$CK" --codes "$TMP/codes.safetensors" --first 20 --out "$TMP/bad"
check_error "--ckpt" "$T2I" vq eval

# ---- help at each level
"$T2I" vq --help | grep -q "encode" || fail "t2i vq --help does not list encode"
for c in train encode decode eval; do
    "$T2I" vq $c --help | grep -q -- "--" || fail "t2i vq $c --help lists no flags"
done

finish
