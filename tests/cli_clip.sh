#!/bin/bash
# cli_clip.sh - `t2i clip`: classify, rerank (--json, --grid; ensembles, --tta-flip), embed and zeroshot on the public
# golden CLIP weights (tests/data/clip_golden, random weights: the outputs are checked for
# form and consistency, not for meaning); a tiny training run on an FC32 caption folder,
# resumed bit-identically, whose checkpoint carries its own vocabulary; and bad inputs,
# each of which must exit non-zero with one "t2i: ..." line.
# Usage: cli_clip.sh PATH/TO/t2i   (needs Debian's dataset-fashion-mnist)
source "$(dirname "$0")/lib.sh"
W="$ROOT/tests/data/clip_golden/weights.safetensors"
V="$ROOT/clip_rerank/vocab/bpe_simple_vocab_16e6.txt.gz"
IMG="$ROOT/tests/data/img"
export T2I_THREADS=1 # tiny models: threads cost more than they give

# one line on stderr starting with "t2i: " and the exit code
expect_error() { # code what cmd...
    local code=$1 what=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ "$rc" -eq "$code" ] || fail "$what: exit $rc, expected $code ($(head -c 300 "$TMP/err"))"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$what: stderr has $(wc -l <"$TMP/err") lines: $(head -c 300 "$TMP/err")"
    grep -q '^t2i: ' "$TMP/err" || fail "$what: stderr does not start with 't2i: ': $(cat "$TMP/err")"
}

if ! "$T2I" clip --help >/dev/null 2>&1; then
    echo "FAIL: $T2I has no 'clip' command (register clip_cmd from clip_rerank/clip.h in cli/main.c)" >&2
    exit 1
fi

A="$IMG/clip_src_300x200.png" B="$IMG/png_rgb8.png" C="$IMG/jpeg_rgb444.jpg" G="$IMG/png_gray8.png"

# ---- classify: probabilities over the labels, highest first, summing to 100%
if ! "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels "a cat" "a red car" "two dogs" >"$TMP/cls" 2>"$TMP/err"; then
    fail "classify exited non-zero: $(cat "$TMP/err")"
fi
[ "$(grep -c '%' "$TMP/cls")" -eq 3 ] || fail "classify printed $(grep -c '%' "$TMP/cls") label lines, expected 3"
sum=$(grep '%' "$TMP/cls" | awk '{s += $1} END {printf "%.1f", s}')
[ "$sum" = "100.0" ] || fail "classify probabilities sum to $sum%"
sorted=$(grep '%' "$TMP/cls" | awk '{print $1}' | sed 's/%//' | sort -gr | tr '\n' ' ')
[ "$sorted" = "$(grep '%' "$TMP/cls" | awk '{print $1}' | sed 's/%//' | tr '\n' ' ')" ] || fail "classify not sorted"
# templates change the text embeddings (so the probabilities); several images, gray too
"$T2I" clip classify "$A" "$G" --ckpt "$W" --vocab "$V" --labels "a cat" "a red car" "two dogs" --templates default \
    >"$TMP/clst" 2>"$TMP/err" || fail "classify --templates default failed: $(cat "$TMP/err")"
[ "$(grep -c '%' "$TMP/clst")" -eq 6 ] || fail "classify of 2 images printed $(grep -c '%' "$TMP/clst") lines"
cmp -s <(head -4 "$TMP/cls") <(head -4 "$TMP/clst") && fail "--templates default changed nothing"
printf 'a blurry photo of {}\n\n{} in the wild\n' >"$TMP/templates.txt"
"$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels a b --templates "$TMP/templates.txt" --json \
    >"$TMP/clsj" 2>"$TMP/err" || fail "classify --templates FILE --json failed: $(cat "$TMP/err")"
grep -q '^{"image":.*"labels":\[{"label":.*"prob":' "$TMP/clsj" || fail "classify --json: $(cat "$TMP/clsj")"

# ---- rerank: JSON in rank order, scores = 100 x cosine, and a grid
if ! "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt "A red car parked on the street." "$A" "$B" "$C" "$G" \
    --top 3 --json --grid "$TMP/grid.png" >"$TMP/rr" 2>"$TMP/err"; then
    fail "rerank exited non-zero: $(cat "$TMP/err")"
fi
[ "$(grep -o '"rank":' "$TMP/rr" | wc -l)" -eq 3 ] || fail "rerank --top 3 --json: $(cat "$TMP/rr")"
scores=$(grep -o '"score":[-0-9.]*' "$TMP/rr" | cut -d: -f2 | tr '\n' ' ')
[ "$scores" = "$(echo "$scores" | tr ' ' '\n' | grep . | sort -gr | tr '\n' ' ')" ] || fail "rerank not in rank order: $scores"
first=$(grep -o '"score":[-0-9.]*,"cosine":[-0-9.]*' "$TMP/rr" | head -1)
awk -v s="$(echo "$first" | sed 's/"score":\([-0-9.]*\),.*/\1/')" -v c="$(echo "$first" | sed 's/.*"cosine"://')" \
    'BEGIN { d = s - 100 * c; exit !(d < 0.001 && d > -0.001) }' || fail "score is not 100 x cosine: $first"
is_png "$TMP/grid.png" || fail "rerank --grid wrote no PNG"
# a folder argument expands to its images; plain output has one line per rank
mkdir -p "$TMP/pool" && cp "$A" "$B" "$C" "$TMP/pool/"
"$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt "a photo of a cat" "$TMP/pool" >"$TMP/rr2" 2>"$TMP/err" ||
    fail "rerank of a folder failed: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/rr2")" -eq 3 ] || fail "rerank of a 3-image folder printed $(wc -l <"$TMP/rr2") lines"

# ---- embed: safetensors with (N, D) and (M, D)
if ! "$T2I" clip embed --ckpt "$W" --vocab "$V" --images "$A" "$B" --texts "a cat" "a dog" "a car" \
    --out "$TMP/emb.safetensors" >/dev/null 2>"$TMP/err"; then
    fail "embed exited non-zero: $(cat "$TMP/err")"
fi
hdr=$(head -c 2000 "$TMP/emb.safetensors" | tr -d '\0')
echo "$hdr" | grep -q '"image_features":{"dtype":"F32","shape":\[2,32\]' || fail "embed: image_features not [2,32]: $hdr"
echo "$hdr" | grep -q '"text_features":{"dtype":"F32","shape":\[3,32\]' || fail "embed: text_features not [3,32]: $hdr"

# ---- zeroshot on tiny folders: class folders, and captions as classes
mkdir -p "$TMP/cls2/red car" "$TMP/cls2/cat"
cp "$A" "$TMP/cls2/red car/a.png" && cp "$C" "$TMP/cls2/red car/c.jpg" && cp "$B" "$TMP/cls2/cat/b.png"
"$T2I" clip zeroshot --ckpt "$W" --vocab "$V" --data "$TMP/cls2" --json >"$TMP/zs" 2>"$TMP/err" ||
    fail "zeroshot on class folders failed: $(cat "$TMP/err")"
grep -q '^zero-shot .*3 images, 2 classes.*top-1' "$TMP/zs" || fail "zeroshot output: $(cat "$TMP/zs")"
grep -q '"top1":' "$TMP/zs" || fail "zeroshot --json line missing"
grep -q '"top5":null' "$TMP/zs" || fail "zeroshot: top-5 of 2 classes reported: $(cat "$TMP/zs")"
grep -q 'top-5' "$TMP/zs" && fail "zeroshot: top-5 of 2 classes printed"
# two class names that tokenize alike tie on every image: a tie is a miss, not a hit
mkdir -p "$TMP/tie/shirt" "$TMP/tie/SHIRT"
cp "$A" "$TMP/tie/shirt/a.png" && cp "$B" "$TMP/tie/SHIRT/b.png"
"$T2I" clip zeroshot --ckpt "$W" --vocab "$V" --data "$TMP/tie" >"$TMP/zst" 2>"$TMP/err" ||
    fail "zeroshot on tied classes failed: $(cat "$TMP/err")"
grep -q 'top-1 0.00%' "$TMP/zst" || fail "zeroshot counts ties as hits: $(cat "$TMP/zst")"

# ---- the 80 canonical captions (bench/fidelity.sh reads them from here)
"$T2I" data fashion-captions --captions >"$TMP/caps" 2>"$TMP/err" || fail "data --captions failed: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/caps")" -eq 80 ] && [ "$(sort -u "$TMP/caps" | wc -l)" -eq 80 ] || fail "--captions: not 80 distinct lines"
grep -qx 'a white t-shirt' "$TMP/caps" && grep -qx 'an orange dress' "$TMP/caps" && grep -qx 'a cyan ankle boot' "$TMP/caps" ||
    fail "--captions: missing captions: $(head -3 "$TMP/caps")"
if "$T2I" data fashion-captions --captions extra >/dev/null 2>"$TMP/err"; then fail "--captions with an argument accepted"; fi

# ---- training: a caption folder from FC32; 3 steps vs 2 + resume 1 give identical checkpoints
"$T2I" data fashion-captions --split train --out "$TMP/fc" --limit 24 >/dev/null 2>&1 || fail "t2i data failed"
TR=(--data "$TMP/fc" --res 16 --patch 8 --vision-width 16 --vision-layers 1 --vision-heads 2 --text-width 16
    --text-layers 1 --text-heads 2 --embed-dim 8 --context 12 --vocab-size 600 --batch 8 --eval-every 0)
"$T2I" clip train "${TR[@]}" --steps 3 --out "$TMP/run3" >"$TMP/tr" 2>"$TMP/err" || fail "clip train failed: $(cat "$TMP/err")"
"$T2I" clip train "${TR[@]}" --steps 3 --stop-after 2 --out "$TMP/run2" >/dev/null 2>"$TMP/err" || fail "clip train (2) failed: $(cat "$TMP/err")"
"$T2I" clip train --out "$TMP/run2" --resume >/dev/null 2>"$TMP/err" || fail "clip train --resume failed: $(cat "$TMP/err")"
cmp -s "$TMP/run3/checkpoint.safetensors" "$TMP/run2/checkpoint.safetensors" || fail "resumed run differs from the uninterrupted one"
[ "$(grep -c '"loss"' "$TMP/run3/metrics.jsonl")" -ge 1 ] || fail "no loss in metrics.jsonl"
grep -q '"logit_scale"' "$TMP/run3/metrics.jsonl" || fail "no logit_scale in metrics.jsonl"
[ -f "$TMP/run3/config.json" ] || fail "no config.json"
expect_error 1 "train over an existing run" "$T2I" clip train "${TR[@]}" --steps 3 --out "$TMP/run3"
# a damaged training state (here edited in the checkpoint's metadata) is a one-line error
# naming the file and the field, never a crash (batch 0 divided by zero, a loader position
# past the data tripped an assertion) nor a run with a negative learning rate
for kv in "batch 0 'batch' = 0 is outside" "loader_pos 99 loader position (epoch 0, item 99) is outside the 24 items" \
          "lr -1 'lr' = -1 is outside" "step -2 'step' = -2 is negative" "crop_pad 9 crop_pad 9 is more than half"; do
    set -- $kv
    key=$1 val=$2
    shift 2
    rm -rf "$TMP/dmg" && cp -r "$TMP/run3" "$TMP/dmg"
    /usr/bin/python3 - "$TMP/run3/checkpoint.safetensors" "$TMP/dmg/checkpoint.safetensors" "$key" "$val" <<'EOF' ||
import json, struct, sys
src, dst, key, val = sys.argv[1:5]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
st = json.loads(h["__metadata__"]["state"])
(st["train"] if key in st["train"] else st)[key] = json.loads(val)
h["__metadata__"]["state"] = json.dumps(st)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(dst, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
        fail "editing the state ($key)"
    expect_error 1 "damaged state $key=$val" "$T2I" clip train --out "$TMP/dmg" --resume --steps 4
    grep -qF "$TMP/dmg/checkpoint.safetensors: " "$TMP/err" && grep -qF "$*" "$TMP/err" ||
        fail "damaged state $key=$val: $(cat "$TMP/err")"
done
# --init: a new run (fresh optimizer and schedule) from a checkpoint's weights and vocabulary;
# the model flags give way to the checkpoint's shape. At the smallest rate two steps leave
# the weights where they were (a fresh initialisation would not be), and the run resumes
# bit-identically like any other.
INIT=(--data "$TMP/fc" --init "$TMP/run3/checkpoint.safetensors" --vision-width 32 --lr 1e-7 --erase 1 --batch 8
      --eval-every 0 --steps 2)
"$T2I" clip train "${INIT[@]}" --out "$TMP/init" >/dev/null 2>"$TMP/err" || fail "clip train --init failed: $(cat "$TMP/err")"
"$T2I" clip train "${INIT[@]}" --stop-after 1 --out "$TMP/init1" >/dev/null 2>"$TMP/err" ||
    fail "clip train --init --stop-after failed: $(cat "$TMP/err")"
"$T2I" clip train --out "$TMP/init1" --resume >/dev/null 2>"$TMP/err" || fail "resuming an --init run: $(cat "$TMP/err")"
cmp -s "$TMP/init/checkpoint.safetensors" "$TMP/init1/checkpoint.safetensors" || fail "resumed --init run differs"
/usr/bin/python3 - "$TMP/run3/checkpoint.safetensors" "$TMP/init/checkpoint.safetensors" "$TMP/init/config.json" <<'EOF' ||
import json, struct, sys
from array import array
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, lambda k: array("f", b[8 + n + h[k]["data_offsets"][0]:8 + n + h[k]["data_offsets"][1]])
(h0, t0), (h1, t1) = load(sys.argv[1]), load(sys.argv[2])
assert h1["__metadata__"]["vocab"] == h0["__metadata__"]["vocab"], "vocabulary not carried over"
assert h1["visual.proj"]["shape"] == h0["visual.proj"]["shape"] == [16, 8], h1["visual.proj"]["shape"]
for k in ("visual.proj", "token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight"):
    d = max(abs(a - b) for a, b in zip(t0(k), t1(k)))
    assert 0 < d < 1e-5, (k, d)
cfg = json.load(open(sys.argv[3]))
assert cfg["init"] == sys.argv[1] and cfg["train"]["erase"] == 1 and cfg["model"]["vision_width"] == 16, cfg
EOF
    fail "--init did not start from the checkpoint"
# --init with another --res: the model runs on larger images (16x16 -> 32x32 at patch 8: 2x2 ->
# 4x4 patches), its grid position embeddings resampled (values checked in test_clip_model)
"$T2I" clip train "${INIT[@]}" --res 32 --crop-pad 4 --out "$TMP/init32" >/dev/null 2>"$TMP/err" ||
    fail "clip train --init --res 32: $(cat "$TMP/err")"
grep -q '16x16 -> 32x32 images, position embeddings resampled' "$TMP/err" || fail "--init --res: $(cat "$TMP/err")"
grep -q '"image_resolution":32' "$TMP/init32/config.json" || fail "--init --res: $(cat "$TMP/init32/config.json")"
"$T2I" ckpt info "$TMP/init32/checkpoint.safetensors" 2>&1 | grep -q 'visual.positional_embedding.*17, 16' ||
    fail "--init --res: position embeddings not 17x16: $("$T2I" ckpt info "$TMP/init32/checkpoint.safetensors" 2>&1)"
"$T2I" clip zeroshot --ckpt "$TMP/init32/checkpoint.safetensors" --data "$TMP/fc" >/dev/null 2>"$TMP/err" ||
    fail "zeroshot at the new resolution: $(cat "$TMP/err")"
expect_error 2 "--init --res not a multiple of the patch" "$T2I" clip train "${INIT[@]}" --res 20 --out "$TMP/init20"
grep -q 'multiple of the patch size 8' "$TMP/err" || fail "--init --res 20: $(cat "$TMP/err")"
# the mean of two checkpoints of one model (`ckpt average`) is a CLIP that evaluates and
# starts a new run; a checkpoint of another shape is refused
"$T2I" ckpt average "$TMP/run3/checkpoint.safetensors" "$TMP/init/checkpoint.safetensors" --out "$TMP/soup.safetensors" \
    >/dev/null 2>"$TMP/err" || fail "ckpt average of two CLIP checkpoints: $(cat "$TMP/err")"
"$T2I" clip zeroshot --ckpt "$TMP/soup.safetensors" --data "$TMP/fc" >/dev/null 2>"$TMP/err" ||
    fail "zeroshot with an averaged checkpoint: $(cat "$TMP/err")"
"$T2I" clip train "${INIT[@]}" --init "$TMP/soup.safetensors" --out "$TMP/init_soup" >/dev/null 2>"$TMP/err" ||
    fail "clip train --init from an averaged checkpoint: $(cat "$TMP/err")"
grep -q "\"init\":\"$TMP/soup.safetensors\"" "$TMP/init_soup/config.json" ||
    fail "--init from the average: config.json $(cat "$TMP/init_soup/config.json")"
expect_error 1 "averaging CLIPs of two shapes" "$T2I" ckpt average "$TMP/run3/checkpoint.safetensors" "$W" \
    --out "$TMP/soup2.safetensors"
expect_error 2 "--init with --resume" "$T2I" clip train --out "$TMP/init" --resume --init "$TMP/run3/checkpoint.safetensors"
expect_error 1 "--init from a missing file" "$T2I" clip train --init "$TMP/none.safetensors" --data "$TMP/fc" --out "$TMP/i2"
printf 'not a safetensors file' >"$TMP/notst.safetensors"
expect_error 1 "--init from a corrupt file" "$T2I" clip train --init "$TMP/notst.safetensors" --data "$TMP/fc" --out "$TMP/i2"
expect_error 2 "--erase out of range" "$T2I" clip train --erase 1.5 --data "$TMP/fc" --out "$TMP/i2"
# a convolutional stem: trains, resumes bit for bit (BatchNorm running statistics are state
# too), carries its layers in the checkpoint, evaluates, and moves to another resolution
# (its convolutions do not depend on it); a patch that is not a power of two is refused
"$T2I" clip train "${TR[@]}" --stem 4 --steps 3 --out "$TMP/stem3" >"$TMP/tr" 2>"$TMP/err" ||
    fail "clip train --stem failed: $(cat "$TMP/err")"
grep -q 'patch 8, convolutional stem' "$TMP/tr" || fail "--stem: not reported: $(cat "$TMP/tr")"
"$T2I" clip train "${TR[@]}" --stem 4 --steps 3 --stop-after 2 --out "$TMP/stem2" >/dev/null 2>"$TMP/err" &&
    "$T2I" clip train --out "$TMP/stem2" --resume >/dev/null 2>"$TMP/err" || fail "clip train --stem --resume: $(cat "$TMP/err")"
cmp -s "$TMP/stem3/checkpoint.safetensors" "$TMP/stem2/checkpoint.safetensors" || fail "resumed --stem run differs"
"$T2I" ckpt info "$TMP/stem3/checkpoint.safetensors" >"$TMP/info" 2>&1
grep -q 'visual.stem.9.weight' "$TMP/info" && grep -q 'visual.stem.7.running_var' "$TMP/info" &&
    ! grep -q 'visual.conv1' "$TMP/info" || fail "--stem: checkpoint tensors: $(cat "$TMP/info")"
grep -q '"vision_stem":4' "$TMP/stem3/config.json" || fail "--stem: config.json $(cat "$TMP/stem3/config.json")"
"$T2I" clip zeroshot --ckpt "$TMP/stem3/checkpoint.safetensors" --data "$TMP/fc" >/dev/null 2>"$TMP/err" ||
    fail "zeroshot with a stem: $(cat "$TMP/err")"
"$T2I" clip train "${INIT[@]}" --init "$TMP/stem3/checkpoint.safetensors" --res 32 --out "$TMP/stem32" >/dev/null \
    2>"$TMP/err" || fail "clip train --init --res 32 with a stem: $(cat "$TMP/err")"
grep -q '"vision_stem":4' "$TMP/stem32/config.json" || fail "--init lost the stem: $(cat "$TMP/stem32/config.json")"
expect_error 2 "--stem with patch 6" "$T2I" clip train "${TR[@]}" --stem 4 --res 12 --patch 6 --out "$TMP/stem6"
grep -q 'power-of-two --patch' "$TMP/err" || fail "--stem --patch 6: $(cat "$TMP/err")"
# --stem-extra 1: a stride-1 convolution (with its BatchNorm) after each stride-2 one, so
# patch 8 gives 3 + 3 x 6 stem layers before the 1x1 (visual.stem.21); refused without a stem
"$T2I" clip train "${TR[@]}" --stem 4 --stem-extra 1 --steps 2 --out "$TMP/stemx" >/dev/null 2>"$TMP/err" ||
    fail "clip train --stem-extra failed: $(cat "$TMP/err")"
"$T2I" ckpt info "$TMP/stemx/checkpoint.safetensors" >"$TMP/info" 2>&1
grep -q 'visual.stem.21.bias' "$TMP/info" && grep -q 'visual.stem.16.running_mean' "$TMP/info" ||
    fail "--stem-extra: checkpoint tensors: $(cat "$TMP/info")"
grep -q '"vision_stem_extra":1' "$TMP/stemx/config.json" || fail "--stem-extra: config.json $(cat "$TMP/stemx/config.json")"
"$T2I" clip zeroshot --ckpt "$TMP/stemx/checkpoint.safetensors" --data "$TMP/fc" >/dev/null 2>"$TMP/err" ||
    fail "zeroshot with --stem-extra: $(cat "$TMP/err")"
expect_error 2 "--stem-extra without a stem" "$T2I" clip train "${TR[@]}" --stem 0 --stem-extra 1 --out "$TMP/stemx0"
grep -q 'needs a convolutional stem' "$TMP/err" || fail "--stem-extra --stem 0: $(cat "$TMP/err")"
# the checkpoint carries its vocabulary: no --vocab needed
"$T2I" clip zeroshot --ckpt "$TMP/run3/checkpoint.safetensors" --data "$TMP/fc" >"$TMP/zs2" 2>"$TMP/err" ||
    fail "zeroshot with a t2i checkpoint failed: $(cat "$TMP/err")"
grep -q 'captions' "$TMP/zs2" || fail "zeroshot on a caption folder: $(cat "$TMP/zs2")"

# the shipped CLIP on FC32 test with the 8 templates ensembled per pair: a mix-up of pairs
# and templates would fall to chance (1/80), the right ensemble stays near the plain figure
"$T2I" clip zeroshot --ckpt "$ROOT/samples/models/clip.safetensors" --ensemble --n 200 --json >"$TMP/zse" 2>"$TMP/err" ||
    fail "zeroshot --ensemble failed: $(cat "$TMP/err")"
/usr/bin/python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); assert r["ensemble"] and r["top1"] > 0.7, r' \
    "$TMP/zse" 2>"$TMP/err" || fail "zeroshot --ensemble: $(cat "$TMP/zse") $(cat "$TMP/err")"
# FC32's train split holds none of the held-out pairs: no accuracy is made up for them
"$T2I" clip zeroshot --ckpt "$ROOT/samples/models/clip.safetensors" --data fashion-captions:train --n 50 --json \
    >"$TMP/zstr" 2>"$TMP/err" || fail "zeroshot on FC32 train: $(cat "$TMP/err")"
grep -q '^  held-out pairs: none among these images$' "$TMP/zstr" || fail "zeroshot on train: $(cat "$TMP/zstr")"
grep -q '"held_n":0,"held_top1":null,"held_top5":null,' "$TMP/zstr" || fail "zeroshot --json on train: $(cat "$TMP/zstr")"

# ensembles (--ckpt A,B): the shipped pair's zero-shot on 200 FC32 test items (above 80%:
# chance is 1.25%); a CLIP twice ranks as it does alone; an ensemble is refused on
# non-FC32 data, and a missing member named
S1=$ROOT/samples/models/clip.safetensors S2=$ROOT/samples/models/clip2.safetensors
if [ -f "$S2" ]; then
    "$T2I" clip zeroshot --ckpt "$S1,$S2" --n 200 --json >"$TMP/zsp" 2>"$TMP/err" ||
        fail "zeroshot A,B: $(cat "$TMP/err")"
    /usr/bin/python3 -c 'import json,sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert r["n"] == 200 and r["top1"] > 0.8, r' "$TMP/zsp" || fail "zeroshot A,B: $(cat "$TMP/zsp")"
fi
"$T2I" clip rerank --ckpt "$W,$W" --vocab "$V" --prompt "A red car parked on the street." "$A" "$B" "$C" "$G" \
    --top 3 --json >"$TMP/rr2x" 2>"$TMP/err" || fail "rerank --ckpt W,W: $(cat "$TMP/err")"
/usr/bin/python3 -c 'import json,sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert [x["path"] for x in a] == [x["path"] for x in b], (a, b)
assert all(abs(x["cosine"] - y["cosine"]) < 1e-6 for x, y in zip(a, b)), (a, b)' "$TMP/rr" "$TMP/rr2x" ||
    fail "rerank --ckpt W,W differs from W"
# --tta-flip: an image and its mirror image score alike (and do not without it)
/usr/bin/python3 -c 'import random,sys
random.seed(3); w, h = 40, 30
px = [[bytes(random.randrange(256) for _ in range(3)) for _ in range(w)] for _ in range(h)]
for path, rows in ((sys.argv[1], px), (sys.argv[2], [r[::-1] for r in px])):
    open(path, "wb").write(b"P6 %d %d 255\n" % (w, h) + b"".join(b"".join(r) for r in rows))' "$TMP/m0.ppm" "$TMP/m1.ppm"
for tta in "" --tta-flip; do
    "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt "a photo of a cat" "$TMP/m0.ppm" "$TMP/m1.ppm" $tta --json \
        >"$TMP/rrm$tta" 2>"$TMP/err" || fail "rerank $tta: $(cat "$TMP/err")"
done
/usr/bin/python3 -c 'import json,sys
a, b = ([x["cosine"] for x in json.load(open(f))] for f in sys.argv[1:3])
assert abs(a[0] - a[1]) > 1e-4, a
assert abs(b[0] - b[1]) < 1e-6, b' "$TMP/rrm" "$TMP/rrm--tta-flip" || fail "rerank --tta-flip: a mirror image scores differently"
expect_error 1 "ensemble on a folder" "$T2I" clip zeroshot --ckpt "$W,$W" --vocab "$V" --data "$TMP/cls2"
expect_error 1 "missing ensemble member" "$T2I" clip rerank --ckpt "$W,$TMP/none.safetensors" --vocab "$V" \
    --prompt x "$A"

# ---- bad inputs: one line, non-zero
expect_error 1 "missing checkpoint" "$T2I" clip classify "$A" --ckpt "$TMP/none.safetensors" --vocab "$V" --labels a b
printf 'not a safetensors file' >"$TMP/bad.safetensors"
expect_error 1 "corrupt checkpoint" "$T2I" clip rerank --ckpt "$TMP/bad.safetensors" --vocab "$V" --prompt x "$A"
expect_error 1 "no vocabulary" env -u T2I_CLIP_VOCAB "$T2I" clip classify "$A" --ckpt "$W" --labels a b
expect_error 1 "missing image" "$T2I" clip classify "$TMP/none.png" --ckpt "$W" --vocab "$V" --labels a b
printf 'PNG? no' >"$TMP/broken.png"
expect_error 1 "corrupt image" "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt x "$A" "$TMP/broken.png"
expect_error 1 "invalid UTF-8 label" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels "a" $'b\xff'
expect_error 1 "invalid UTF-8 prompt" "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt $'\xc3' "$A"
expect_error 2 "one label" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels a
expect_error 1 "empty label" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels "  " b
grep -q -- '--labels item 1: empty text' "$TMP/err" || fail "empty label: $(cat "$TMP/err")"
expect_error 1 "control character in a label" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels $'a\x01' b
grep -q -- '--labels item 1: a control character (byte 1)' "$TMP/err" || fail "control character: $(cat "$TMP/err")"
expect_error 1 "duplicate label" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels a b a
grep -q "'a' is given twice" "$TMP/err" || fail "duplicate label: $(cat "$TMP/err")"
printf 'a photo of {}\na photo\n' >"$TMP/tnobrace.txt"
expect_error 1 "template without {}" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels a b \
    --templates "$TMP/tnobrace.txt"
grep -q "tnobrace.txt:2: template has no {}" "$TMP/err" || fail "template without {}: $(cat "$TMP/err")"
printf 'a {} \xff\n' >"$TMP/tff.txt"
expect_error 1 "template not UTF-8" "$T2I" clip classify "$A" --ckpt "$W" --vocab "$V" --labels a b --templates "$TMP/tff.txt"
grep -q "tff.txt:1: not valid UTF-8" "$TMP/err" || fail "template not UTF-8: $(cat "$TMP/err")"
expect_error 2 "zeroshot --prompts without {}" "$T2I" clip zeroshot --ckpt "$W" --vocab "$V" --data "$TMP/cls2" \
    --prompts "a photo"
expect_error 2 "empty prompt" "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt "" "$A"
grep -q -- "--prompt was given an empty value" "$TMP/err" || fail "empty prompt: $(cat "$TMP/err")"
expect_error 1 "blank prompt" "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt "  " "$A"
expect_error 2 "grid not .png" "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt x "$A" --grid "$TMP/g.jpg"
expect_error 1 "vocabulary of another model" "$T2I" clip embed --ckpt "$ROOT/samples/models/clip.safetensors" --vocab "$V" \
    --texts a --out "$TMP/e.safetensors"
grep -q "the vocabulary has 49408 tokens but the model's token embedding has 610" "$TMP/err" ||
    fail "vocabulary of another model: $(cat "$TMP/err")"
expect_error 2 "no --ckpt" "$T2I" clip embed --vocab "$V" --texts a --out "$TMP/e.safetensors"
expect_error 2 "negative --threads" "$T2I" clip embed --ckpt "$W" --vocab "$V" --texts a --out "$TMP/e.safetensors" \
    --threads -1
mkdir -p "$TMP/emptydir"
expect_error 1 "rerank of an empty folder" "$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt x "$TMP/emptydir"
grep -q "no image files .* in $TMP/emptydir" "$TMP/err" || fail "empty folder not named: $(cat "$TMP/err")"
# a file name that is not UTF-8 still gives valid JSON
cp "$A" "$TMP/"$'n\xff"q.png'
"$T2I" clip rerank --ckpt "$W" --vocab "$V" --prompt x "$TMP/"$'n\xff"q.png' --json >"$TMP/rj" 2>"$TMP/err" ||
    fail "rerank of an odd file name failed: $(cat "$TMP/err")"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r[0]["path"].endswith("n\ufffd\"q.png"), r' \
    "$TMP/rj" 2>"$TMP/err" || fail "rerank --json with a non-UTF-8 name: $(cat "$TMP/rj") $(cat "$TMP/err")"
expect_error 2 "embed without --out" "$T2I" clip embed --ckpt "$W" --vocab "$V" --texts a
expect_error 2 "rerank without --prompt" "$T2I" clip rerank --ckpt "$W" --vocab "$V" "$A"
expect_error 1 "zeroshot on an unlabelled folder" "$T2I" clip zeroshot --ckpt "$W" --vocab "$V" --data "$TMP/pool"
expect_error 1 "zeroshot on a missing folder" "$T2I" clip zeroshot --ckpt "$W" --vocab "$V" --data "$TMP/nowhere"
"$T2I" clip --help >/dev/null 2>&1 || fail "clip --help exited non-zero"
for c in train tokenize embed classify zeroshot rerank; do
    "$T2I" clip $c --help >/dev/null 2>&1 || fail "clip $c --help exited non-zero"
done

finish
