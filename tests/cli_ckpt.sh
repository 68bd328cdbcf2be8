#!/bin/bash
# cli_ckpt.sh - `t2i ckpt info` on good and malformed safetensors files.
# Usage: bash tests/cli_ckpt.sh PATH/TO/t2i   (CTest runs it from tests/)
# Also `ckpt convert` refusals (name collisions, values beyond f16/bf16, a pipe as output).
# Checks exit codes (0 good, 1 malformed, 2 usage), that every tensor name and the totals
# are listed, metadata display (compact JSON, cutting long values unless --full), --json,
# --help at each level, and that a malformed file gives exactly one stderr line
# "t2i: FILE: problem" naming the file.
set -u
T2I=${1:?usage: cli_ckpt.sh T2I_BINARY}
ROOT=${T2I_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
GOOD=$ROOT/tests/data/st_ref.safetensors
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# mkst FILE HEADER DATA_BYTES: writes a safetensors file (header padded to 8 bytes, data zeros)
mkst() {
    local h=$2
    while (( ${#h} % 8 )); do h="$h "; done
    local n=${#h} i
    {
        for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(( (n >> (8 * i)) & 255 )))"; done
        printf '%s' "$h"
        head -c "$3" /dev/zero
    } > "$1"
}

# --- a good file ---
out=$("$T2I" ckpt info "$GOOD" 2>"$TMP/err"); rc=$?
[ $rc -eq 0 ] || fail "good file: exit $rc"
[ -s "$TMP/err" ] && fail "good file: stderr not empty: $(cat "$TMP/err")"
for name in src src_f16 src_bf16 mat ids big_i64 mask f64 scalar empty; do
    grep -qE "^  $name +[A-Z0-9]+ +\[" <<<"$out" || fail "good file: tensor $name not listed"
done
grep -qE '^  src_bf16 +BF16 +\[79\] +158$' <<<"$out" || fail "good file: src_bf16 row wrong"
grep -qE '^  ids +I64 +\[2, 5\] +80$' <<<"$out" || fail "good file: ids row wrong"
grep -q 'total: 16 tensors, 464 parameters, 1559 bytes' <<<"$out" || fail "good file: totals wrong"
grep -q '^  config: {"dim":64,"layers":2,"name":"tiny"}$' <<<"$out" || fail "good file: config not shown"
grep -q '^  format: pt$' <<<"$out" || fail "good file: format not shown"

# --json: one line, one object
js=$("$T2I" ckpt info --json "$GOOD"); rc=$?
[ $rc -eq 0 ] || fail "--json: exit $rc"
[ "$(wc -l <<<"$js")" -eq 1 ] || fail "--json: not one line"
grep -q '^{"file":' <<<"$js" || fail "--json: not an object"
grep -q '"name":"big_i64","dtype":"I64","shape":\[2\],"data_offsets":\[1456,1472\],"bytes":16' <<<"$js" \
    || fail "--json: big_i64 entry wrong"
grep -q '"n_tensors":16,"parameters":464,"bytes":1559' <<<"$js" || fail "--json: totals wrong"
grep -q '"format":"pt"' <<<"$js" || fail "--json: metadata missing"

# pretty metadata: JSON objects compacted, long values cut unless --full
long=$(printf 'x%.0s' $(seq 1 500))
mkst "$TMP/meta.safetensors" \
    '{"__metadata__":{"config":"{ \"dim\" : 64,\n \"depth\": 2 }","long":"'"$long"'"},"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}' 8
out=$("$T2I" ckpt info "$TMP/meta.safetensors"); rc=$?
[ $rc -eq 0 ] || fail "meta file: exit $rc"
grep -q '^  config: {"dim":64,"depth":2}$' <<<"$out" || fail "meta file: config not compacted"
grep -q '^  long: x\{200\} \.\.\. (500 characters; --full shows all)$' <<<"$out" || fail "meta file: long value not cut"
out=$("$T2I" ckpt info --full "$TMP/meta.safetensors")
grep -q "^  long: $long\$" <<<"$out" || fail "--full: long value cut"

# --- malformed files: one stderr line naming the file, exit 1 ---
mkst "$TMP/overlap.safetensors" \
    '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}' 24
printf 'abc' > "$TMP/short.safetensors"
mkst "$TMP/dtype.safetensors" '{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}' 1
printf '\377\377\377\377\000\000\000\000{}' > "$TMP/beyond.safetensors"
for bad in overlap:overlap short:short dtype:dtype beyond:beyond; do
    f="$TMP/${bad%%:*}.safetensors"; word=${bad##*:}
    "$T2I" ckpt info "$f" >"$TMP/out" 2>"$TMP/err"; rc=$?
    [ $rc -eq 1 ] || fail "$f: exit $rc, expected 1"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$f: stderr is not one line: $(cat "$TMP/err")"
    grep -q "^t2i: $f: .*$word" "$TMP/err" || fail "$f: message '$(cat "$TMP/err")' lacks file or '$word'"
    [ -s "$TMP/out" ] && fail "$f: printed on stdout"
done
"$T2I" ckpt info "$TMP/nonexistent.safetensors" 2>"$TMP/err" >/dev/null; rc=$?
[ $rc -eq 1 ] || fail "missing file: exit $rc"
grep -q "^t2i: $TMP/nonexistent.safetensors: cannot open" "$TMP/err" || fail "missing file: $(cat "$TMP/err")"

# a bad file among good ones: the good ones are still listed, exit 1
out=$("$T2I" ckpt info "$GOOD" "$TMP/short.safetensors" "$TMP/meta.safetensors" 2>"$TMP/err"); rc=$?
[ $rc -eq 1 ] || fail "mixed: exit $rc"
grep -q "^$TMP/meta.safetensors$" <<<"$out" || fail "mixed: later file not listed"
[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "mixed: stderr not one line"

# --- convert: refusals leave no file behind ---
# convert_fails NAME EXPECTED_WORDS ARGS...: exit 1, one stderr line naming the input, no output file
convert_fails() {
    local name=$1 words=$2
    shift 2
    rm -f "$TMP/conv.safetensors"
    "$T2I" ckpt convert "$@" >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc -eq 1 ] || fail "convert $name: exit $rc, expected 1"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "convert $name: stderr is not one line: $(cat "$TMP/err")"
    grep -q "$words" "$TMP/err" || fail "convert $name: message '$(cat "$TMP/err")' lacks '$words'"
    [ -e "$TMP/conv.safetensors" ] && fail "convert $name: wrote an output"
}
convert_fails collision "two tensors would be written as 'src' (the second is '.*'): check --rename" \
    "$GOOD" "$TMP/conv.safetensors" --dtype f32 --rename src_f16=src
convert_fails empty-name "gives tensor 'mat' an empty name" "$GOOD" "$TMP/conv.safetensors" --dtype f32 --rename mat=
convert_fails bf16-overflow "tensor 'src' holds 3.40282e+38, beyond the BF16 range" "$GOOD" "$TMP/conv.safetensors"
mkst "$TMP/big.safetensors" '{"big":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 0
printf '\x00\x00\x80\x3f\x00\x24\x74\x49' >>"$TMP/big.safetensors" # 1.0, 1e6
convert_fails f16-overflow "$TMP/big.safetensors: tensor 'big' holds 1e+06, beyond the F16 range" \
    "$TMP/big.safetensors" "$TMP/conv.safetensors" --dtype f16
"$T2I" ckpt convert "$TMP/big.safetensors" "$TMP/conv.safetensors" --dtype f16 --keep-f32 big >/dev/null \
    || fail "convert --keep-f32: failed"
mkfifo "$TMP/fifo"
"$T2I" ckpt convert "$GOOD" "$TMP/fifo" --dtype f32 >/dev/null 2>"$TMP/err" && fail "convert to a pipe: exit 0"
grep -q "^t2i: $TMP/fifo: exists and is not a regular file" "$TMP/err" || fail "convert to a pipe: $(cat "$TMP/err")"
[ -p "$TMP/fifo" ] || fail "convert to a pipe: the pipe was replaced"

# --- usage ---
"$T2I" ckpt --help >"$TMP/out" 2>&1 || fail "ckpt --help: non-zero exit"
grep -q "info" "$TMP/out" || fail "ckpt --help does not list info"
"$T2I" ckpt info --help >"$TMP/out" 2>&1 || fail "ckpt info --help: non-zero exit"
grep -q -- "--json" "$TMP/out" || fail "ckpt info --help does not list --json"
"$T2I" ckpt info >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no file: exit $rc, expected 2"
"$T2I" ckpt info --bogus "$GOOD" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unknown flag: exit $rc, expected 2"
"$T2I" ckpt frobnicate >/dev/null 2>&1; rc=$?
[ $rc -ne 0 ] || fail "unknown subcommand: exit 0"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "cli_ckpt: all checks passed"
