#!/bin/bash
# cli_tokenize.sh - `t2i clip tokenize`: ids of two golden strings (read from
# tests/data/clip_golden/tokens.jsonl, made by openai/CLIP's tokenizer), --json,
# --context truncation, $T2I_CLIP_VOCAB, and one-line errors with a non-zero exit for
# invalid UTF-8, a missing vocabulary file and no vocabulary at all.
# Usage: cli_tokenize.sh PATH/TO/t2i
source "$(dirname "$0")/lib.sh"
VOCAB="$ROOT/clip_rerank/vocab/bpe_simple_vocab_16e6.txt.gz"
GOLDEN="$ROOT/tests/data/clip_golden/tokens.jsonl"
unset T2I_CLIP_VOCAB

# the "text" and "ids" of golden line N (plain strings without quotes or backslashes)
golden_text() { sed -n "${1}p" "$GOLDEN" | sed 's/^{"text": "\([^"]*\)".*/\1/'; }
golden_ids() { sed -n "${1}p" "$GOLDEN" | sed 's/.*"ids": \[\([^]]*\)\].*/\1/' | tr -d ','; }

t1=$(golden_text 3)   # A red car parked on the street.
t2=$(golden_text 11)  # I'm sure they're coming; ... (contractions)
[ "$t1" = "A red car parked on the street." ] || fail "golden line 3 is '$t1'"
want1="49406 $(golden_ids 3) 49407"
want2="49406 $(golden_ids 11) 49407"

if ! "$T2I" clip tokenize --vocab "$VOCAB" "$t1" "$t2" >"$TMP/out" 2>"$TMP/err"; then
    fail "tokenize exited non-zero: $(cat "$TMP/err")"
fi
[ "$(sed -n 1p "$TMP/out")" = "$want1" ] || fail "line 1: '$(sed -n 1p "$TMP/out")', want '$want1'"
[ "$(sed -n 2p "$TMP/out")" = "$want2" ] || fail "line 2: '$(sed -n 2p "$TMP/out")', want '$want2'"
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "expected 2 lines, got $(wc -l <"$TMP/out")"

# --json, and the vocabulary from the environment
out=$(T2I_CLIP_VOCAB="$VOCAB" "$T2I" clip tokenize --json "$t1" 2>"$TMP/err") || fail "--json failed: $(cat "$TMP/err")"
[ "$out" = "[$(echo "$want1" | tr ' ' ',')]" ] || fail "--json gave '$out'"

# --context: padded to N, or truncated with <|endoftext|> last (and a note on stderr)
out=$("$T2I" clip tokenize --vocab "$VOCAB" --context 12 "$t1" 2>/dev/null)
[ "$out" = "$want1 0 0" ] || fail "--context 12 gave '$out'"
out=$("$T2I" clip tokenize --vocab "$VOCAB" --context 5 "$t1" 2>"$TMP/err")
want5="$(echo "$want1" | cut -d' ' -f1-4) 49407"
[ "$out" = "$want5" ] || fail "--context 5 gave '$out', want '$want5'"
grep -q "truncated" "$TMP/err" || fail "--context 5: no truncation note"
"$T2I" clip tokenize --vocab "$VOCAB" --context 1 x >/dev/null 2>&1
[ $? -eq 2 ] || fail "--context 1 was accepted"

# invalid UTF-8: exit 1, the byte offset in the message; the valid text is still printed
"$T2I" clip tokenize --vocab "$VOCAB" $'ok\xff' "$t1" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] || fail "invalid UTF-8: exit $rc, want 1"
grep -q "invalid UTF-8 at byte 2" "$TMP/err" || fail "invalid UTF-8 message: $(cat "$TMP/err")"
[ "$(cat "$TMP/out")" = "$want1" ] || fail "invalid UTF-8: other text not printed"

# a missing vocabulary file: named in the message
"$T2I" clip tokenize --vocab "$TMP/missing.txt.gz" x >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] || fail "missing vocab: exit $rc, want 1"
grep -q "$TMP/missing.txt.gz" "$TMP/err" || fail "missing vocab message: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "missing vocab: more than one line on stderr"

# a corrupt one (not a merges file)
printf 'just some words here\n' >"$TMP/bad.txt"
"$T2I" clip tokenize --vocab "$TMP/bad.txt" x >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "corrupt vocab accepted"
grep -q "$TMP/bad.txt" "$TMP/err" || fail "corrupt vocab message: $(cat "$TMP/err")"

# no vocabulary at all: tells the user to pass --vocab
"$T2I" clip tokenize x >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] || fail "no vocab: exit 0"
grep -q -- "--vocab" "$TMP/err" || fail "no vocab message: $(cat "$TMP/err")"

# a t2i CLIP checkpoint carries its learned vocabulary (the shipped one: 610 tokens, so the
# specials are 608 and 609); another model's checkpoint has none
SHIPPED="$ROOT/samples/models"
out=$("$T2I" clip tokenize --vocab "$SHIPPED/clip.safetensors" "a red dress" 2>"$TMP/err") ||
    fail "tokenize with a checkpoint's vocabulary: $(cat "$TMP/err")"
[[ "$out" =~ ^608\ [0-9\ ]+\ 609$ ]] || fail "tokenize with a checkpoint's vocabulary: '$out'"
"$T2I" clip tokenize --vocab "$SHIPPED/vq.safetensors" x >/dev/null 2>"$TMP/err" && fail "vq checkpoint as vocab: exit 0"
grep -q "vq.safetensors: a safetensors file without a vocabulary" "$TMP/err" || fail "vq as vocab: $(cat "$TMP/err")"

"$T2I" clip tokenize --help >"$TMP/out" 2>&1 || fail "--help exited non-zero"
grep -q -- "--context" "$TMP/out" || fail "--help does not list --context"

finish
