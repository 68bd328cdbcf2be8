#!/bin/bash
# cli_dalle.sh - the DALL-E-style path end to end with tiny models in a temporary folder:
# `t2i vq train` + `t2i vq encode` (256 FC32 items), `t2i dalle train` (refusal to
# overwrite, bit-identical --resume), `t2i dalle sample` (files, candidate i regenerated
# alone, the empty-prompt error), `t2i generate` reranking with a tiny CLIP trained for a
# few steps (scores.json, rank files, the missing-default error; an ensemble of two: scores
# the mean of each CLIP's), and `t2i eval fidelity`
# on the result when the shipped classifier exists.
# Usage: cli_dalle.sh PATH/TO/t2i   (needs Debian's dataset-fashion-mnist)
source "$(dirname "$0")/lib.sh"
run() { # run NAME CMD... : must exit 0
    local name=$1
    shift
    if ! "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"; then
        fail "$name exited non-zero: $(tail -3 "$TMP/$name.err")"
        return 1
    fi
}
export T2I_PROGRESS_SECONDS=1000

# ---- tiny VQ and codes
run vq "$T2I" vq train --preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 --code-dim 8 --codes 32 \
    --steps 20 --batch 16 --limit 256 --sample-every 1000 --threads 1 --out "$TMP/vq" || finish
run encode "$T2I" vq encode --ckpt "$TMP/vq/checkpoint.safetensors" --data fashion-captions --limit 256 \
    --threads 1 --out "$TMP/codes.safetensors" || finish

# ---- transformer: 20 steps twice (the same file), and interrupted + resumed (the same file)
TR=(dalle train --codes "$TMP/codes.safetensors" --preset custom --width 32 --layers 1 --heads 2 --text-len 24
    --text-vocab 1024 --batch 8 --warmup 5 --lr 3e-3 --sample-every 10 --ckpt-every 10 --log-every 5 --threads 1)
run train "$T2I" "${TR[@]}" --steps 20 --out "$TMP/d1" || finish
run train_a "$T2I" "${TR[@]}" --steps 20 --out "$TMP/d2"
cmp -s "$TMP/d1/checkpoint.safetensors" "$TMP/d2/checkpoint.safetensors" || fail "two identical runs differ"
grep -q '"step":20' "$TMP/d1/metrics.jsonl" || fail "metrics.jsonl lacks step 20"
[ -f "$TMP/d1/samples/latest.png" ] || fail "no sample grid"
[ -f "$TMP/d1/config.json" ] || fail "no config.json"
if "$T2I" "${TR[@]}" --steps 20 --out "$TMP/d1" >/dev/null 2>"$TMP/over.err"; then
    fail "training into an existing run without --resume succeeded"
fi
grep -q -- "--resume" "$TMP/over.err" || fail "overwrite refusal does not mention --resume: $(cat "$TMP/over.err")"
# Ctrl-C after the first checkpoint (step 10), then --resume: the same file as d1
"$T2I" "${TR[@]}" --steps 20 --out "$TMP/d4" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 400); do
    [ -f "$TMP/d4/checkpoint.safetensors" ] && break
    sleep 0.05
done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
if [ $rc -eq 130 ]; then
    run resume "$T2I" dalle train --resume --out "$TMP/d4" --threads 1
elif [ $rc -ne 0 ]; then
    fail "interrupted training exited $rc (expected 130, or 0 if it finished first)"
fi
cmp -s "$TMP/d1/checkpoint.safetensors" "$TMP/d4/checkpoint.safetensors" ||
    fail "interrupted + resumed run differs from the uninterrupted one"
# a dataset caption with a control character stops training with a one-line error naming
# the item and showing the character escaped
run badcap_data "$T2I" data fashion-captions --out "$TMP/badcap" --limit 8
sed -i '4s/"text":"[^"]*"/"text":"a red\\u0001 shirt"/' "$TMP/badcap/metadata.jsonl"
run badcap_encode "$T2I" vq encode --ckpt "$TMP/vq/checkpoint.safetensors" --data "$TMP/badcap" --threads 1 \
    --out "$TMP/badcap.safetensors"
if "$T2I" "${TR[@]}" --codes "$TMP/badcap.safetensors" --steps 1 --out "$TMP/dbad" >/dev/null 2>"$TMP/badcap.err"; then
    fail "training on a caption with a control character succeeded"
fi
grep -qF 'caption of item 3 ("a red\x01 shirt"): the caption holds a control character at byte 5' "$TMP/badcap.err" ||
    fail "control-character caption: $(cat "$TMP/badcap.err")"
[ "$(wc -l <"$TMP/badcap.err")" -eq 1 ] || fail "control-character caption: not one line: $(cat "$TMP/badcap.err")"
CK="$TMP/d1/checkpoint.safetensors"

# ---- --init: a new run from d1's weights, vocabulary and VQ. After one step at lr 1e-7 every
# weight is d1's to within 1e-6 (a fresh model is far off), the vocabulary, VQ and config
# are d1's, and config.json names the checkpoint
run init "$T2I" dalle train --codes "$TMP/codes.safetensors" --init "$CK" --steps 1 --batch 8 --lr 1e-7 \
    --min-lr 0 --warmup 0 --sample-every 0 --threads 1 --out "$TMP/di"
grep -q "starting from $CK" "$TMP/init.out" || fail "--init: $(cat "$TMP/init.out")"
grep -q '"init":' "$TMP/di/config.json" || fail "--init: config.json lacks init"
/usr/bin/python3 "$ROOT/tests/helpers/fresh_adam.py" "$TMP/di/checkpoint.safetensors" >/dev/null || fail "--init: the optimizer did not start fresh"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$CK" "$TMP/di/checkpoint.safetensors" 1e-6 --meta vocab,vq,config \
    >/dev/null || fail "--init did not start from the checkpoint's weights, vocabulary and VQ"
run fresh "$T2I" "${TR[@]}" --steps 1 --seed 9 --out "$TMP/d5"
/usr/bin/python3 "$ROOT/tests/helpers/st_close.py" "$TMP/d5/checkpoint.safetensors" "$TMP/di/checkpoint.safetensors" \
    1e-3 >/dev/null && fail "st_close cannot tell a fresh model from the fine-tuned one"
# refusals, one line each: with --resume; an architecture flag that differs; codes of
# another VQ; a caption that does not fit the checkpoint's text positions
check_error "--init starts a new run" "$T2I" dalle train --init "$CK" --resume --out "$TMP/d1"
check_error "--width 64 does not match" "$T2I" dalle train --codes "$TMP/codes.safetensors" --init "$CK" \
    --preset custom --width 64 --steps 1 --out "$TMP/dw"
run vq2 "$T2I" vq train --preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 --code-dim 8 --codes 32 \
    --steps 2 --batch 16 --limit 64 --sample-every 1000 --threads 1 --out "$TMP/vq2"
run encode2 "$T2I" vq encode --ckpt "$TMP/vq2/checkpoint.safetensors" --data fashion-captions --limit 64 \
    --threads 1 --out "$TMP/codes2.safetensors"
check_error "codes made with the VQ" "$T2I" dalle train --codes "$TMP/codes2.safetensors" --init "$CK" --steps 1 \
    --out "$TMP/dv"
run long_data "$T2I" data fashion-captions --out "$TMP/longcap" --limit 8
sed -i '2s/"text":"[^"]*"/"text":"a very long caption of many unusual words: zebra quokka xylophone marmalade"/' \
    "$TMP/longcap/metadata.jsonl"
run long_encode "$T2I" vq encode --ckpt "$TMP/vq/checkpoint.safetensors" --data "$TMP/longcap" --threads 1 \
    --out "$TMP/longcap.safetensors"
check_error "more than its 23 text positions" "$T2I" dalle train --codes "$TMP/longcap.safetensors" --init "$CK" \
    --steps 1 --out "$TMP/dl"

# ---- sampling
run sample "$T2I" dalle sample --ckpt "$CK" --prompt "a red sneaker" --n 4 --batch 3 --top-k 8 --cfg 2 --seed 5 \
    --threads 1 --out "$TMP/s"
for i in 0000 0001 0002 0003; do [ -f "$TMP/s/sample_$i.png" ] || fail "missing sample_$i.png"; done
[ -f "$TMP/s/grid.png" ] || fail "no grid.png"
[ "$(wc -l <"$TMP/s/metadata.jsonl")" -eq 4 ] || fail "metadata.jsonl should have 4 lines"
grep -q '"text":"a red sneaker"' "$TMP/s/metadata.jsonl" || fail "metadata.jsonl lacks the caption"
run sample1 "$T2I" dalle sample --ckpt "$CK" --prompt "a red sneaker" --first 2 --n 1 --top-k 8 --cfg 2 --seed 5 \
    --threads 1 --out "$TMP/s1"
cmp -s "$TMP/s/sample_0002.png" "$TMP/s1/sample_0002.png" || fail "candidate 2 regenerated alone differs"
run sample_nc "$T2I" dalle sample --ckpt "$CK" --prompt "a red sneaker" --n 4 --top-k 8 --cfg 2 --seed 5 --no-cache \
    --threads 1 --out "$TMP/s2"
cmp -s "$TMP/s/grid.png" "$TMP/s2/grid.png" || fail "uncached sampling differs from cached"
# a shipped-style copy (bf16) whose recorded VQ is a relative path: resolved (here against the
# working folder; shipped models use paths relative to the source tree)
cp "$TMP/vq/checkpoint.safetensors" "$TMP/vq_copy.safetensors"
run convert "$T2I" ckpt convert "$CK" "$TMP/ship.safetensors" --meta vq=vq_copy.safetensors
"$T2I" ckpt info --json "$TMP/ship.safetensors" | grep -q '"vq":"vq_copy.safetensors"' || fail "convert --meta did not set vq"
"$T2I" ckpt info --json "$TMP/ship.safetensors" | grep -q "\"converted_from\":\"$CK\"" || fail "converted_from is not the source"
# a copy converted again keeps the origin it is given
run convert2 "$T2I" ckpt convert "$TMP/ship.safetensors" "$TMP/ship2.safetensors" --meta converted_from=runs/origin
"$T2I" ckpt info --json "$TMP/ship2.safetensors" | grep -q '"converted_from":"runs/origin"' || fail "--meta converted_from ignored"
(cd "$TMP" && "$T2I" dalle sample --ckpt ship.safetensors --prompt "a red sneaker" --n 2 --threads 1 --out s5 >/dev/null 2>"$TMP/s5.err") ||
    fail "sampling a converted copy with a relative vq: $(cat "$TMP/s5.err")"
# metadata.jsonl is replaced by a rename, never rewritten in place: a file hard-linked to
# the old one keeps its bytes (an in-place write would cut it short on a signal or full disk)
printf 'old\n' >"$TMP/s5_keep"
ln -f "$TMP/s5_keep" "$TMP/s5/metadata.jsonl"
(cd "$TMP" && "$T2I" dalle sample --ckpt ship.safetensors --prompt "a red sneaker" --n 2 --threads 1 --out s5 >/dev/null 2>"$TMP/s5.err") ||
    fail "sampling again into s5: $(cat "$TMP/s5.err")"
[ "$(cat "$TMP/s5_keep")" = old ] || fail "dalle sample wrote metadata.jsonl in place (its hard link changed)"
[ "$(grep -c '"file_name":"sample_000[01].png","text":"a red sneaker","seed":1,"candidate":[01]}' "$TMP/s5/metadata.jsonl")" = 2 ] ||
    fail "dalle sample metadata.jsonl: $(cat "$TMP/s5/metadata.jsonl")"
for bad in "format=x" "vq" "a=1 a=2"; do
    # shellcheck disable=SC2086
    if "$T2I" ckpt convert "$CK" "$TMP/bad.safetensors" --meta $bad >/dev/null 2>"$TMP/meta.err"; then
        fail "convert --meta $bad succeeded"
    fi
    [ ! -e "$TMP/bad.safetensors" ] || fail "convert --meta $bad wrote a file"
done
if "$T2I" dalle sample --ckpt "$CK" --prompt "   " --n 1 --out "$TMP/s3" >/dev/null 2>"$TMP/empty.err"; then
    fail "an empty prompt succeeded"
fi
grep -q "empty" "$TMP/empty.err" || fail "empty prompt message: $(cat "$TMP/empty.err")"
if "$T2I" dalle sample --ckpt "$CK" --prompt "a" --top-p 1.5 --out "$TMP/s3" >/dev/null 2>"$TMP/topp.err"; then
    fail "--top-p 1.5 accepted"
fi

# ---- generate with a tiny CLIP
run clip "$T2I" clip train --vision-width 16 --vision-layers 1 --vision-heads 2 --text-width 16 --text-layers 1 \
    --text-heads 2 --embed-dim 8 --vocab-size 600 --batch 16 --steps 3 --eval-every 0 --threads 1 --out "$TMP/clip"
CL="$TMP/clip/checkpoint.safetensors"
if [ -f "$CL" ]; then
    printf 'a red sneaker\n# a comment\n\na blue bag\n' >"$TMP/prompts.txt"
    run gen "$T2I" generate --prompts "$TMP/prompts.txt" --candidates 6 --top 3 --batch 4 --top-k 8 --seed 3 \
        --clip "$CL" --dalle "$CK" --threads 1 --out "$TMP/g"
    for slug in a_red_sneaker a_blue_bag; do
        for r in 000 001 002; do [ -f "$TMP/g/$slug/rank_$r.png" ] || fail "missing $slug/rank_$r.png"; done
        [ ! -e "$TMP/g/$slug/rank_003.png" ] || fail "--top 3 wrote rank_003.png"
        [ -f "$TMP/g/$slug/grid.png" ] || fail "missing $slug/grid.png"
        [ -f "$TMP/g/$slug/scores.json" ] || fail "missing $slug/scores.json"
    done
    # the overview of several captions: a row of 8 cells (32 px, 2 px padding) per caption
    sz=$(od -An -tu1 -j16 -N8 "$TMP/g/grid.png" | tr -s ' ')
    [ "$sz" = " 0 0 1 18 0 0 0 70" ] || fail "overview grid is not 274x70 (IHDR bytes:$sz)"
    /usr/bin/python3 - "$TMP/g" <<'EOF' || fail "scores.json content"
import json, sys
d = sys.argv[1]
top = json.load(open(d + "/scores.json"))
assert len(top) == 6, len(top)
for cap in ("a red sneaker", "a blue bag"):
    rs = [e for e in top if e["caption"] == cap]
    assert [e["rank"] for e in rs] == [0, 1, 2], rs
    assert all(e["source"] == "dalle" and e["seed"] == 3 for e in rs)
    sc = [e["score"] for e in rs]
    assert sc == sorted(sc, reverse=True), sc
    assert len({e["candidate"] for e in rs}) == 3 and all(0 <= e["candidate"] < 6 for e in rs)
    assert all(e["file"].endswith("/rank_%03d.png" % e["rank"]) for e in rs)
EOF
    # an ensemble of two CLIPs (--clip A,B): every candidate's score is the mean of its scores
    # by each CLIP alone, the order follows it; five CLIPs are refused
    run clip2 "$T2I" clip train --vision-width 16 --vision-layers 1 --vision-heads 2 --text-width 16 --text-layers 1 \
        --text-heads 2 --embed-dim 8 --vocab-size 600 --batch 16 --steps 3 --eval-every 0 --seed 5 --threads 1 \
        --out "$TMP/clip2"
    CL2="$TMP/clip2/checkpoint.safetensors"
    G=(generate --prompt "a red sneaker" --candidates 6 --top 6 --batch 4 --top-k 8 --seed 3 --dalle "$CK" --threads 1)
    run ensA "$T2I" "${G[@]}" --clip "$CL" --out "$TMP/ensA"
    run ensB "$T2I" "${G[@]}" --clip "$CL2" --out "$TMP/ensB"
    run ensAB "$T2I" "${G[@]}" --clip "$CL,$CL2" --out "$TMP/ensAB"
    /usr/bin/python3 - "$TMP/ensA" "$TMP/ensB" "$TMP/ensAB" <<'EOF4' ||
import json, sys
runs = [json.load(open(d + "/scores.json")) for d in sys.argv[1:4]]
a, b, e = ({x["candidate"]: x["score"] for x in r} for r in runs)
assert sorted(a) == sorted(e) == list(range(6)), (a, e)
for c in e:
    assert abs(e[c] - (a[c] + b[c]) / 2) < 1e-5, (c, a[c], b[c], e[c])
assert [x["candidate"] for x in runs[2]] == sorted(e, key=lambda c: -e[c])
EOF4
        fail "generate --clip A,B: scores are not the mean"
    "$T2I" generate --prompt "a red sneaker" --candidates 2 --top 1 --clip "$CL,$CL,$CL,$CL,$CL" --dalle "$CK" \
        --threads 1 --out "$TMP/ens5" >/dev/null 2>"$TMP/err" && fail "five CLIPs accepted"
    grep -q "at most 4 CLIPs" "$TMP/err" || fail "five CLIPs: $(cat "$TMP/err")"
    # without --clip the models folder's clip, clip2 and clip3 rank together (here A, B, A:
    # each score is (2a + b) / 3); with --tta-flip (the default) each candidate scores as `clip rerank
    # --tta-flip` scores its saved image (to 5e-6 in cosine; the tiny CLIP differs from its
    # mirror by 2e-5, and so do the scores of --tta-flip=0)
    mkdir -p "$TMP/m3"
    ln -s "$CL" "$TMP/m3/clip.safetensors" && ln -s "$CL2" "$TMP/m3/clip2.safetensors" &&
        ln -s "$CL" "$TMP/m3/clip3.safetensors"
    T2I_MODELS="$TMP/m3" run ens3 "$T2I" "${G[@]}" --out "$TMP/ens3"
    run ensT "$T2I" "${G[@]}" --clip "$CL" --tta-flip --out "$TMP/ensT"
    run ensP "$T2I" "${G[@]}" --clip "$CL" --tta-flip=0 --out "$TMP/ensP"
    run rrT "$T2I" clip rerank --ckpt "$CL" --prompt "a red sneaker" --tta-flip --json --top 100 --threads 1 \
        "$TMP/ensT/a_red_sneaker"
    /usr/bin/python3 - "$TMP/ensA" "$TMP/ensB" "$TMP/ens3" "$TMP/ensT" "$TMP/rrT.out" "$TMP/ensP" <<'EOF5' ||
import json, os, sys
a, b, e3, t, p = ({x["candidate"]: x["score"] for x in json.load(open(d + "/scores.json"))} for d in sys.argv[1:5] + sys.argv[6:7])
assert all(abs(a[c] - t[c]) < 1e-6 for c in a), ("flipping is not the default", a, t)
for c in e3:
    assert abs(e3[c] - (2 * a[c] + b[c]) / 3) < 1e-5, ("clip3", c, a[c], b[c], e3[c])
files = {x["file"]: x["score"] for x in json.load(open(sys.argv[4] + "/scores.json"))}
rr = {os.path.basename(x["path"]): x["cosine"] for x in json.load(open(sys.argv[5]))}
assert all(os.path.basename(f) in rr for f in files), rr
tta = max(abs(files[f] - rr[os.path.basename(f)]) for f in files)
plain = max(abs(p[x["candidate"]] - rr[os.path.basename(x["file"])]) for x in json.load(open(sys.argv[4] + "/scores.json")))
assert tta < 5e-6 and plain > 2e-5, (tta, plain)  # measured 4.7e-7 and 4.6e-5
EOF5
        fail "generate: clip3 by default or --tta-flip"
    # the best candidate regenerated by dalle sample is the rank-0 image
    best=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['candidate'])" "$TMP/g/a_red_sneaker/scores.json")
    run regen "$T2I" dalle sample --ckpt "$CK" --prompt "a red sneaker" --first "$best" --n 1 --top-k 8 --seed 3 --threads 1 --out "$TMP/r"
    cmp -s "$TMP/g/a_red_sneaker/rank_000.png" "$TMP/r/sample_$(printf %04d "$best").png" ||
        fail "rank 0 is not candidate $best regenerated"
    # a caption-conditioned GAN on the same CLIP: --generator gan, then both sources in one ranking
    run tgan "$T2I" gan train --data fashion-captions --text-encoder "$CL" --g-width 8 --d-width 8 --z-dim 8 \
        --batch 8 --steps 2 --sample-every 1000 --threads 1 --out "$TMP/tgan"
    TG="$TMP/tgan/checkpoint.safetensors"
    run gengan "$T2I" generate --prompt "a red sneaker" --generator gan --gan "$TG" --candidates 4 --top 2 --batch 4 \
        --clip "$CL" --threads 1 --out "$TMP/gg"
    run genboth "$T2I" generate --prompt "a red sneaker" --generator both --gan "$TG" --dalle "$CK" --candidates 3 \
        --top 6 --batch 4 --top-k 8 --clip "$CL" --threads 1 --out "$TMP/gb"
    /usr/bin/python3 - "$TMP/gg/scores.json" "$TMP/gb/scores.json" <<'EOF3' || fail "generate with the GAN: scores.json"
import json, sys
g = json.load(open(sys.argv[1]))
assert len(g) == 2 and all(e["source"] == "gan" for e in g), g
b = json.load(open(sys.argv[2]))
assert len(b) == 6 and sorted(e["source"] for e in b) == ["dalle"] * 3 + ["gan"] * 3, b
sc = [e["score"] for e in b]
assert sc == sorted(sc, reverse=True), sc
EOF3
    # --upscale: the kept images through a tiny x2 SR model, 32x32 -> 64x64
    IMG="$ROOT/tests/data/img"
    mkdir -p "$TMP/photos"
    for f in a b c d e f; do cp "$IMG/rs_src_rgb64.png" "$TMP/photos/$f.png"; done
    run srt "$T2I" sr train --data "$TMP/photos" --scale 2 --preset custom --width 6 --blocks 1 --crop 32 --batch 2 \
        --steps 1 --gan-steps 0 --val-every 100 --threads 1 --out "$TMP/sr"
    run genup "$T2I" generate --prompt "a red sneaker" --generator gan --gan "$TG" --candidates 4 --top 2 --batch 4 \
        --clip "$CL" --upscale "$TMP/sr/checkpoint.safetensors" --threads 1 --out "$TMP/gu"
    /usr/bin/python3 - "$TMP/gu/a_red_sneaker/rank_000.png" "$TMP/gg/a_red_sneaker/rank_000.png" <<'EOF4' ||
import struct, sys
def size(p):
    b = open(p, "rb").read(24)
    return struct.unpack(">II", b[16:24])
(w, h), (w0, h0) = size(sys.argv[1]), size(sys.argv[2])
assert (w, h) == (2 * w0, 2 * h0), ((w, h), (w0, h0))
EOF4
        fail "--upscale did not double the kept images"
    if "$T2I" generate --prompt "a red sneaker" --generator gan --gan "$TG" --clip "$CL" --upscale "$TMP/nope.safetensors" \
        --candidates 2 --top 1 --out "$TMP/gu2" >/dev/null 2>"$TMP/up.err"; then
        fail "--upscale with a missing file succeeded"
    fi
    grep -q "nope.safetensors" "$TMP/up.err" || fail "missing --upscale file not named: $(cat "$TMP/up.err")"
    if "$T2I" generate --prompt "a red sneaker" --generator both --gan "$TG" --dalle "$CK" --candidates 3 --top 7 \
        --clip "$CL" --threads 1 --out "$TMP/gb2" >/dev/null 2>"$TMP/top.err"; then
        fail "--top beyond all candidates succeeded"
    fi
    if "$T2I" generate --prompt "a red sneaker" --generator dall-e --out "$TMP/gb3" >/dev/null 2>"$TMP/gen.err"; then
        fail "--generator dall-e succeeded"
    fi
    grep -q "dalle, gan, both or auto" "$TMP/gen.err" || fail "bad --generator message: $(cat "$TMP/gen.err")"
    if "$T2I" generate --prompt "  " --generator gan --gan "$TG" --clip "$CL" --out "$TMP/ge" >/dev/null 2>"$TMP/empty.err"; then
        fail "generate with an empty prompt succeeded"
    fi
    grep -q "prompt is empty" "$TMP/empty.err" || fail "empty-prompt message: $(cat "$TMP/empty.err")"
    # a prompts file is checked whole before any caption is generated: FILE:LINE names the fault
    printf 'a red dress\n\na \xc3\x28 bag\n' >"$TMP/p_utf8.txt"
    printf 'a red dress\na bl\0ue bag\n' >"$TMP/p_nul.txt"
    for pf in p_utf8.txt:3:not p_nul.txt:2:a; do
        f=${pf%%:*} want=${pf#*:}
        if "$T2I" generate --prompts "$TMP/$f" --generator gan --gan "$TG" --clip "$CL" --out "$TMP/gp" >/dev/null \
            2>"$TMP/p.err"; then fail "generate --prompts $f succeeded"; fi
        grep -q "^t2i: $TMP/$f:${want%%:*}: ${want#*:}" "$TMP/p.err" || fail "--prompts $f message: $(cat "$TMP/p.err")"
        [ -e "$TMP/gp" ] && fail "--prompts $f: generated before the error"
    done
    # a smaller --top into the same folder leaves no rank of the earlier run behind
    "$T2I" generate --prompt "a red dress" --generator gan --gan "$TG" --clip "$CL" --candidates 4 --top 3 \
        --out "$TMP/gs" >/dev/null 2>&1 || fail "generate --top 3 failed"
    "$T2I" generate --prompt "a red dress" --generator gan --gan "$TG" --clip "$CL" --candidates 4 --top 1 \
        --out "$TMP/gs" >/dev/null 2>&1 || fail "generate --top 1 failed"
    [ "$(ls "$TMP/gs/a_red_dress" | grep -c '^rank_')" = 1 ] || fail "stale ranks: $(ls "$TMP/gs/a_red_dress")"
    # --top larger than the candidates: one error naming both, up front
    if "$T2I" generate --prompt "a red dress" --generator gan --gan "$TG" --clip "$CL" --candidates 4 \
        --out "$TMP/gt" >/dev/null 2>"$TMP/top.err"; then fail "--top 32 of 4 candidates succeeded"; fi
    grep -q -- "--top 32 is more than the 4 candidates per caption" "$TMP/top.err" || fail "top: $(cat "$TMP/top.err")"
    # --dalle naming a VQ checkpoint: the error is about that file, not about a missing default VQ
    if "$T2I" generate --prompt "a red sneaker" --generator dalle --dalle "$TMP/vq/checkpoint.safetensors" --clip "$CL" \
        --out "$TMP/gw" >/dev/null 2>"$TMP/wrong.err"; then
        fail "generate with a VQ file as --dalle succeeded"
    fi
    grep -q "vq/checkpoint.safetensors" "$TMP/wrong.err" || fail "wrong --dalle message: $(cat "$TMP/wrong.err")"
    # a missing default CLIP names the file and how to get one
    # no default models (T2I_MODELS names an empty folder): errors that say how to get them
    mkdir -p "$TMP/nomodels"
    if T2I_MODELS="$TMP/nomodels" "$T2I" generate --prompt "a red sneaker" --dalle "$CK" --candidates 2 --top 1 \
        --threads 1 --out "$TMP/g2" >/dev/null 2>"$TMP/noclip.err"; then
        fail "generate without a CLIP succeeded"
    fi
    grep -q "clip train" "$TMP/noclip.err" || fail "missing-CLIP message: $(cat "$TMP/noclip.err")"
    if T2I_MODELS="$TMP/nomodels" "$T2I" generate --prompt "a red sneaker" --clip "$CL" --candidates 2 --top 1 \
        --threads 1 --out "$TMP/g3" >/dev/null 2>"$TMP/nogen.err"; then
        fail "generate without any generator succeeded"
    fi
    [ -s "$TMP/nogen.err" ] || fail "no message when no generator exists"
    [ ! -e "$TMP/g3/scores.json" ] || fail "a failed generate wrote scores.json"
    CLS="${T2I_CLASSIFIER:-${T2I_SOURCE_DIR:-..}/samples/models/fmnist_classifier.safetensors}"
    if [ -f "$CLS" ]; then
        run fid "$T2I" eval fidelity "$TMP/g" --threads 1 --json --classifier "$CLS"
        grep -q '"all":{"n":6' "$TMP/fid.out" || fail "fidelity JSON: $(cat "$TMP/fid.out")"
        run fid1 "$T2I" eval fidelity "$TMP/g" --threads 1 --top 1 --json --classifier "$CLS"
        grep -q '"all":{"n":2' "$TMP/fid1.out" || fail "fidelity --top 1: $(cat "$TMP/fid1.out")"
        run fids "$T2I" eval fidelity "$TMP/s" --threads 1 --classifier "$CLS"
        # a damaged scores.json entry: an error naming file and entry, not a guess
        mkdir -p "$TMP/gbad" && cp "$TMP/g/a_red_sneaker/rank_000.png" "$TMP/gbad/r.png" 2>/dev/null ||
            cp "$(ls "$TMP"/g/*/rank_000.png | head -1)" "$TMP/gbad/r.png"
        printf '[{"file":"r.png","caption":"a red sneaker","rank":"zero"}]' >"$TMP/gbad/scores.json"
        if "$T2I" eval fidelity "$TMP/gbad" --threads 1 --classifier "$CLS" >/dev/null 2>"$TMP/gbad.err"; then
            fail "fidelity accepted a string rank"
        fi
        grep -q "gbad/scores.json: entry 0: \"rank\" is not a non-negative integer" "$TMP/gbad.err" ||
            fail "string rank message: $(cat "$TMP/gbad.err")"
        # the judge on real FC32 images: every colour right, classes as the classifier
        run fidreal "$T2I" eval fidelity fashion-captions:test --limit 300 --json --threads 1 --classifier "$CLS"
        /usr/bin/python3 - "$TMP/fidreal.out" <<'EOF2' || fail "judge on real images: $(cat "$TMP/fidreal.out")"
import json, sys
r = json.load(open(sys.argv[1]))["all"]
assert r["n"] == 300 and r["colour"] == 1.0 and r["class"] > 0.8, r
EOF2
    fi
fi

# ---- README's main command with the shipped models (few candidates): the transformer by default,
# both generators in one ranking with --generator both
SHIP=${T2I_SOURCE_DIR:-..}/samples/models
run ship "$T2I" generate --prompt "a red sneaker" --candidates 6 --top 4 --threads 2 --out "$TMP/ship"
run ship2 "$T2I" generate --prompt "a red sneaker" --generator both --candidates 6 --top 12 --threads 2 --out "$TMP/ship2"
[ -f "$TMP/ship/a_red_sneaker/grid.png" ] || fail "shipped models: no grid.png"
/usr/bin/python3 - "$TMP/ship/scores.json" "$TMP/ship2/scores.json" <<'EOF3' || fail "shipped models: scores.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r) == 4 and [e["rank"] for e in r] == [0, 1, 2, 3], r
assert all(e["source"] == "dalle" for e in r), r
assert all(-1.0 <= e["score"] <= 1.0 for e in r) and r[0]["score"] >= r[-1]["score"], r
b = json.load(open(sys.argv[2]))
assert len(b) == 12 and sorted(e["source"] for e in b) == ["dalle"] * 6 + ["gan"] * 6, b
sc = [e["score"] for e in b]
assert sc == sorted(sc, reverse=True), sc
# the transformer's candidates keep their scores when ranked together with the GAN's
d = {e["candidate"]: e["score"] for e in b if e["source"] == "dalle"}
assert all(abs(d[e["candidate"]] - e["score"]) < 1e-5 for e in r), (d, r)
EOF3
[ -f "$SHIP/sr.safetensors" ] || fail "samples/models/sr.safetensors is missing"

finish
