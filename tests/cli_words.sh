#!/bin/bash
# cli_words.sh - the training captions' word set in checkpoints and `t2i generate`'s
# unknown-word warnings, end to end:
#   - `t2i dalle train` and `t2i gan train --text-encoder` (2 steps, tiny, on a folder of
#     8 images with our own captions) store exactly the captions' words in "caption_words",
#     and --resume keeps them;
#   - generate warns once per caption, naming exactly the unknown words (caption order,
#     each once, function words aside), and says nothing for a known caption; a checkpoint
#     without the entry gives no warning; a damaged entry is a one-line error;
#   - `t2i ckpt words` restores the entry with everything else byte-identical (the stamped
#     file equals the original byte for byte), refuses other models, and needs --data;
#   - the shipped dalle and GAN warn for "a girl with a yellow flower in hand" and not for
#     "a yellow coat".
# Usage: cli_words.sh PATH/TO/t2i   (needs Debian's dataset-fashion-mnist)
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
MODELS="$ROOT/samples/models"

# meta FILE KEY: the metadata value (empty when absent)
meta() {
    python3 - "$1" "$2" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
print(json.loads(b[8:8 + n]).get('__metadata__', {}).get(sys.argv[2], ''))
EOF
}
# set_meta IN OUT KEY [VALUE]: a copy of IN with KEY set to VALUE, or removed without VALUE
set_meta() {
    python3 - "$@" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
if len(sys.argv) > 4: h['__metadata__'][sys.argv[3]] = sys.argv[4]
else: del h['__metadata__'][sys.argv[3]]
s = json.dumps(h, separators=(',', ':'), ensure_ascii=False).encode()
s += b' ' * (-len(s) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(s)) + s + b[8 + n:])
EOF
}

# ---- a folder of 8 FC32 images with our own captions
run data "$T2I" data fashion-captions --out "$TMP/caps" --limit 8 || finish
CAPS=("a red coat" "A blue BAG with straps" "Zoë's green dress" "a red coat" "the t-shirt, in white!"
    "a blue bag" "two red coats" "a green dress")
i=0
while IFS= read -r line; do
    echo "${line/\"text\":\"*\",\"colour\"/\"text\":\"${CAPS[$i]}\",\"colour\"}"
    i=$((i + 1))
done <"$TMP/caps/metadata.jsonl" >"$TMP/meta.jsonl"
mv "$TMP/meta.jsonl" "$TMP/caps/metadata.jsonl"
grep -q '"text":"two red coats"' "$TMP/caps/metadata.jsonl" || fail "captions not replaced: $(cat "$TMP/caps/metadata.jsonl")"
WANT="a bag blue coat coats dress green in red shirt straps t the two white with zoë's"
run encode "$T2I" vq encode --ckpt "$MODELS/vq.safetensors" --data "$TMP/caps" --threads 1 \
    --out "$TMP/codes.safetensors" || finish

# ---- a tiny transformer: 2 steps; the word set in its checkpoint
TR=(dalle train --codes "$TMP/codes.safetensors" --preset custom --width 16 --layers 1 --heads 2 --text-len 12
    --text-vocab 600 --batch 4 --warmup 1 --sample-every 1000 --threads 1)
run train "$T2I" "${TR[@]}" --steps 2 --out "$TMP/d" || finish
CK="$TMP/d/checkpoint.safetensors"
[ "$(meta "$CK" caption_words)" = "$WANT" ] || fail "caption_words: '$(meta "$CK" caption_words)', want '$WANT'"
run resume "$T2I" dalle train --resume --steps 3 --out "$TMP/d" --threads 1
grep -q '"step":3' <(meta "$CK" state) || fail "resume did not reach step 3: $(meta "$CK" state)"
[ "$(meta "$CK" caption_words)" = "$WANT" ] || fail "after --resume: caption_words '$(meta "$CK" caption_words)'"

# ---- generate: the unknown words named once, in caption order; none for known captions
G=(generate --dalle "$CK" --candidates 2 --top 1 --batch 2 --threads 1)
run gen_unknown "$T2I" "${G[@]}" --prompt "a red girl with a Hat, a girl's hat and a blue bag" --out "$TMP/g1"
WARN='t2i: warning: "a red girl with a Hat, a girl'"'"'s hat and a blue bag": the dalle model never saw the words girl, hat, girl'"'"'s in its training captions; its images will not show them'
[ "$(grep -c 'never saw' "$TMP/gen_unknown.err")" = 1 ] || fail "not one warning: $(cat "$TMP/gen_unknown.err")"
grep -qxF "$WARN" "$TMP/gen_unknown.err" || fail "warning: $(cat "$TMP/gen_unknown.err"), want $WARN"
[ -f "$TMP/g1/scores.json" ] || fail "no scores.json: generation did not run"
run gen_known "$T2I" "${G[@]}" --prompt "Two RED coats, with straps" --out "$TMP/g2"
grep -q 'never saw' "$TMP/gen_known.err" && fail "warning for a known caption: $(cat "$TMP/gen_known.err")"
printf 'a blue dress\nthe green girl\na girl\n' >"$TMP/prompts.txt"
run gen_list "$T2I" "${G[@]}" --prompts "$TMP/prompts.txt" --out "$TMP/g3"
[ "$(grep -c 'never saw the word girl in' "$TMP/gen_list.err")" = 2 ] ||
    fail "two captions with 'girl': $(cat "$TMP/gen_list.err")"
grep -q '"a blue dress": the' "$TMP/gen_list.err" && fail "warning for 'a blue dress': $(cat "$TMP/gen_list.err")"

# ---- a caption GAN (on the shipped GAN's text encoder): the same set, the same warning
run tgan "$T2I" gan train --data "$TMP/caps" --text-encoder "$MODELS/gan_text.safetensors" --g-width 8 --d-width 8 \
    --z-dim 8 --batch 8 --steps 2 --sample-every 1000 --threads 1 --out "$TMP/tgan"
TG="$TMP/tgan/checkpoint.safetensors"
[ "$(meta "$TG" caption_words)" = "$WANT" ] || fail "gan caption_words: '$(meta "$TG" caption_words)', want '$WANT'"
run tgan_resume "$T2I" gan train --resume --steps 3 --out "$TMP/tgan" --threads 1
[ "$(meta "$TG" caption_words)" = "$WANT" ] || fail "gan after --resume: caption_words '$(meta "$TG" caption_words)'"
run gen_gan "$T2I" "${G[@]}" --generator gan --gan "$TG" --prompt "a red girl" --out "$TMP/gg"
grep -qxF 't2i: warning: "a red girl": the gan model never saw the word girl in its training captions; its images will not show it' \
    "$TMP/gen_gan.err" || fail "gan warning: $(cat "$TMP/gen_gan.err")"

# ---- a checkpoint without the entry (made before it existed): no check, no warning
set_meta "$CK" "$TMP/old.safetensors" caption_words
[ -z "$(meta "$TMP/old.safetensors" caption_words)" ] || fail "set_meta did not remove the entry"
run gen_old "$T2I" "${G[@]}" --dalle "$TMP/old.safetensors" --prompt "a red girl" --out "$TMP/g4"
grep -q 'never saw' "$TMP/gen_old.err" && fail "warning without a word set: $(cat "$TMP/gen_old.err")"
# a damaged entry: one line naming the file and the entry
set_meta "$CK" "$TMP/bad.safetensors" caption_words "a  red"
check_error "bad.safetensors: metadata 'caption_words'" "$T2I" "${G[@]}" --dalle "$TMP/bad.safetensors" \
    --prompt "a red coat" --out "$TMP/g5"

# ---- ckpt words: stamps the older file back to the original, byte for byte
run words "$T2I" ckpt words "$TMP/old.safetensors" --data "$TMP/caps" --out "$TMP/stamped.safetensors"
grep -q "^ckpt words: 17 words of 8 captions" "$TMP/words.out" || fail "ckpt words said: $(cat "$TMP/words.out")"
cmp -s "$CK" "$TMP/stamped.safetensors" || fail "stamped file differs from the trained checkpoint"
# in place, replacing a set: the tensors and the other metadata unchanged
cp "$CK" "$TMP/inplace.safetensors"
run words_fc "$T2I" ckpt words "$TMP/inplace.safetensors" --data fashion-captions:test
grep -q "replace the set in" "$TMP/words_fc.out" || fail "ckpt words in place: $(cat "$TMP/words_fc.out")"
FC="$(meta "$TMP/inplace.safetensors" caption_words)"
case " $FC " in *" sneaker "*) ;; *) fail "fashion-captions words lack 'sneaker': $FC" ;; esac
case " $FC " in *" zoë's "*) fail "the old set was not replaced: $FC" ;; esac
"$T2I" ckpt info --full "$CK" | sed '1d;/^  caption_words:/d;s/header [0-9]* bytes/header N bytes/' >"$TMP/info_a"
"$T2I" ckpt info --full "$TMP/inplace.safetensors" | sed '1d;/^  caption_words:/d;s/header [0-9]* bytes/header N bytes/' \
    >"$TMP/info_b"
cmp -s "$TMP/info_a" "$TMP/info_b" || fail "ckpt info differs after ckpt words: $(diff "$TMP/info_a" "$TMP/info_b")"
datablock() { python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; sys.stdout.buffer.write(b[8+n:])' "$1"; }
cmp -s <(datablock "$CK") <(datablock "$TMP/inplace.safetensors") || fail "tensor data changed by ckpt words"
check_error "a vq checkpoint" "$T2I" ckpt words "$MODELS/vq.safetensors" --data "$TMP/caps" --out "$TMP/x.safetensors"
check_error "--data DATA is required" "$T2I" ckpt words "$TMP/inplace.safetensors"
check_error "no such folder" "$T2I" ckpt words "$TMP/inplace.safetensors" --data "$TMP/nothere"
"$T2I" ckpt words --help >"$TMP/help.out" 2>&1 || fail "ckpt words --help failed"
grep -q -- "--data" "$TMP/help.out" || fail "ckpt words --help lacks --data"

# ---- the shipped models know FC32's captions only
if [ -f "$MODELS/dalle.safetensors" ] && [ -f "$MODELS/gan.safetensors" ]; then
    S=(generate --candidates 2 --top 1 --batch 2 --threads 1)
    for gen in dalle gan; do
        run "ship_$gen" "$T2I" "${S[@]}" --generator $gen --prompt "a girl with a yellow flower in hand" --out "$TMP/s_$gen"
        grep -qxF "t2i: warning: \"a girl with a yellow flower in hand\": the $gen model never saw the words girl, flower, hand in its training captions; its images will not show them" \
            "$TMP/ship_$gen.err" || fail "shipped $gen: $(cat "$TMP/ship_$gen.err")"
        run "ship_known_$gen" "$T2I" "${S[@]}" --generator $gen --prompt "a photo of a yellow coat" --out "$TMP/k_$gen"
        grep -q 'never saw' "$TMP/ship_known_$gen.err" && fail "shipped $gen warns for a known caption"
    done
    run ship_both "$T2I" "${S[@]}" --generator both --prompt "a red unicorn" --out "$TMP/s_both"
    [ "$(grep -c 'never saw the word unicorn in' "$TMP/ship_both.err")" = 2 ] ||
        fail "--generator both: not one warning per model: $(cat "$TMP/ship_both.err")"
fi
finish
