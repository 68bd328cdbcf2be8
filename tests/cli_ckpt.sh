#!/bin/bash
# cli_ckpt.sh - `t2i ckpt info` on good and malformed safetensors files.
# Usage: bash tests/cli_ckpt.sh PATH/TO/t2i   (CTest runs it from tests/)
# Also `ckpt convert` refusals (name collisions, values beyond f16/bf16, a pipe as output), and
# `ckpt average`: the mean of three files (floats averaged, integers copied, optimizer moments
# and history metadata left out), a file averaged with itself unchanged, an average averaged
# again with a training checkpoint, and refusals of files that are not the same model or of
# an output that is one of the inputs.
# Checks exit codes (0 good, 1 malformed, 2 usage), that every tensor name and the totals
# are listed, metadata display (compact JSON, cutting long values unless --full), --json,
# --help at each level, and that a malformed file gives exactly one stderr line
# "t2i: FILE: problem" naming the file.
source "$(dirname "$0")/lib.sh"
GOOD=$ROOT/tests/data/st_ref.safetensors

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

# --- average: the element-wise mean of checkpoints of one model ---
# a.safetensors, b, c: one toy model; the others differ from it in one way each
/usr/bin/python3 - "$TMP" <<'EOF' || fail "average: could not write the test files"
import json, struct, sys
from array import array
def save(path, tensors, meta):
    h, data = {"__metadata__": meta}, b""
    for name, (dtype, shape, raw) in tensors.items():
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
f32 = lambda *v: array("f", v).tobytes()
bf16 = lambda *v: b"".join(array("f", [x]).tobytes()[2:] for x in v)  # exact for small integers
i64 = lambda *v: array("q", v).tobytes()
meta = {"format": "t2i", "model": "toy", "config": '{"dim":2}'}
def ckpt(w, h, ids=(5, 6), extra=None, drop=None, meta_over=None, opt=1.0, state="0"):
    t = {"w": ("F32", [2], f32(*w)), "h": ("BF16", [3], bf16(*h)), "ids": ("I64", [2], i64(*ids)),
         "opt_m.w": ("F32", [2], f32(opt, opt)), "opt_v.w": ("F32", [2], f32(opt, opt))}
    t.update(extra or {})
    for k in drop or []:
        del t[k]
    m = dict(meta, state=state, converted_from="x" + state)
    m.update(meta_over or {})
    return t, m
d = sys.argv[1]
save(d + "/a.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), opt=1, state="1"))
save(d + "/b.safetensors", *ckpt((0.3, 6.0), (3, 4, 5), opt=7, state="2"))
save(d + "/c.safetensors", *ckpt((1.0, 1.0), (1, 1, 1)))
save(d + "/cfg.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), meta_over={"config": '{"dim":3}'}))
save(d + "/vocab.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), meta_over={"vocab": "a b"}))
save(d + "/shape.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), extra={"w": ("F32", [1, 2], f32(0.1, -2.0))}))
save(d + "/ids.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), ids=(5, 7)))
save(d + "/missing.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), drop=["h"]))
save(d + "/extra.safetensors", *ckpt((0.1, -2.0), (1, 2, 3), extra={"z": ("F32", [1], f32(0))}))
save(d + "/nan.safetensors", *ckpt((0.1, float("nan")), (1, 2, 3)))
EOF
A=$TMP/a.safetensors B=$TMP/b.safetensors C=$TMP/c.safetensors
"$T2I" ckpt average "$A" "$B" "$C" --out "$TMP/avg.safetensors" >"$TMP/out" 2>"$TMP/err" ||
    fail "average: $(cat "$TMP/err")"
grep -q "^ckpt average: 2 tensors averaged over 3 checkpoints -> $TMP/avg.safetensors (optimizer" "$TMP/out" ||
    fail "average: summary '$(cat "$TMP/out")'"
"$T2I" ckpt average "$A" "$A" --out "$TMP/avg_aa.safetensors" >/dev/null 2>"$TMP/err" ||
    fail "average A A: $(cat "$TMP/err")"
"$T2I" ckpt average "$TMP/avg.safetensors" "$B" --out "$TMP/avg_mix.safetensors" >/dev/null 2>"$TMP/err" ||
    fail "average of an average (no optimizer moments) and a checkpoint: $(cat "$TMP/err")"
/usr/bin/python3 - "$TMP/avg.safetensors" "$TMP/avg_aa.safetensors" "$A" "$B" "$C" "$TMP/avg_mix.safetensors" <<'EOF' ||
import json, struct, sys
from array import array
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, lambda k, t="f": array(t, b[8 + n + h[k]["data_offsets"][0]:8 + n + h[k]["data_offsets"][1]])
h, t = load(sys.argv[1])
assert sorted(k for k in h if k != "__metadata__") == ["h", "ids", "w"], list(h)
assert h["w"]["dtype"] == "F32" and h["h"]["dtype"] == "F32" and h["ids"]["dtype"] == "I64", h
for k, want in (("w", [(0.1 + 0.3 + 1.0) / 3, (-2.0 + 6.0 + 1.0) / 3]), ("h", [5 / 3, 7 / 3, 3])):
    got = list(t(k))
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-6, (k, got, want)
assert list(t("ids", "q")) == [5, 6]
m = h["__metadata__"]
assert json.loads(m.pop("averaged_from")) == sys.argv[3:6], "averaged_from does not list the inputs"
assert m == {"format": "t2i", "model": "toy", "config": '{"dim":2}'}, m
h2, t2 = load(sys.argv[2])
assert t2("w").tobytes() == load(sys.argv[3])[1]("w").tobytes(), "the mean of a file with itself is not the file"
h3, t3 = load(sys.argv[6])
assert max(abs(a - b) for a, b in zip(t3("w"), [(1.4 / 3 + 0.3) / 2, (5 / 3 + 6) / 2])) < 1e-6, list(t3("w"))
assert "opt_m.w" not in h3 and json.loads(h3["__metadata__"]["averaged_from"]) == [sys.argv[1], sys.argv[4]]
EOF
    fail "average: wrong output"
# not the same model: one stderr line naming the odd file, exit 1, nothing written
average_fails() {
    local name=$1 words=$2
    shift 2
    rm -f "$TMP/avgbad.safetensors"
    "$T2I" ckpt average "$@" --out "$TMP/avgbad.safetensors" >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc -eq 1 ] || fail "average $name: exit $rc, expected 1"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "average $name: stderr is not one line: $(cat "$TMP/err")"
    grep -q "$words" "$TMP/err" || fail "average $name: message '$(cat "$TMP/err")' lacks '$words'"
    [ -e "$TMP/avgbad.safetensors" ] && fail "average $name: wrote an output"
}
average_fails config "^t2i: $TMP/cfg.safetensors: metadata 'config' differs from $A's: not the same model" \
    "$A" "$TMP/cfg.safetensors"
average_fails vocab "^t2i: $TMP/vocab.safetensors: metadata 'vocab' that $A lacks" "$A" "$TMP/vocab.safetensors"
average_fails vocab2 "^t2i: $A: metadata 'vocab' missing ($TMP/vocab.safetensors has it)" "$TMP/vocab.safetensors" "$A"
average_fails shape "^t2i: $TMP/shape.safetensors: tensor 'w' is \[1, 2\], \[2\] in $A" \
    "$A" "$B" "$TMP/shape.safetensors"
average_fails ids "tensor 'ids' (I64) differs from .*: only floating-point tensors are averaged" \
    "$A" "$TMP/ids.safetensors"
average_fails missing "^t2i: $TMP/missing.safetensors: tensor 'h' missing ($A has it)" "$A" "$TMP/missing.safetensors"
average_fails extra "^t2i: $TMP/extra.safetensors: tensor 'z' that $A lacks" "$A" "$TMP/extra.safetensors"
average_fails nan "^t2i: $TMP/nan.safetensors: tensor 'w' holds nan at element 1: a diverged run is not averaged" \
    "$A" "$TMP/nan.safetensors"
average_fails corrupt "^t2i: $TMP/short.safetensors: " "$A" "$TMP/short.safetensors"
average_fails absent "^t2i: $TMP/none.safetensors: cannot open" "$A" "$TMP/none.safetensors"
cp "$B" "$TMP/b_copy.safetensors"
"$T2I" ckpt average "$A" "$TMP/b_copy.safetensors" --out "$TMP/b_copy.safetensors" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "average over an input: exit $rc, expected 1"
grep -q "^t2i: $TMP/b_copy.safetensors: --out is one of the inputs" "$TMP/err" ||
    fail "average over an input: $(cat "$TMP/err")"
cmp -s "$B" "$TMP/b_copy.safetensors" || fail "average over an input: the input was changed"
"$T2I" ckpt average "$A" --out "$TMP/avgbad.safetensors" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "average of one file: exit $rc, expected 2"
"$T2I" ckpt average "$A" "$B" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "average without --out: exit $rc, expected 2"

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

finish
