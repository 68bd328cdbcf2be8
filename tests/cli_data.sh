#!/bin/bash
# cli_data.sh - `t2i data`: writes small FC32 and Fashion-MNIST exports and checks the files,
# the metadata lines, determinism, and the one-line errors on bad input.
# Usage: cli_data.sh PATH/TO/t2i   (needs Debian's dataset-fashion-mnist)
source "$(dirname "$0")/lib.sh"

# ---- fashion-captions, train split, first 20 items
if ! "$T2I" data fashion-captions --split train --out "$TMP/fc" --limit 20 >"$TMP/out" 2>"$TMP/err"; then
    fail "fashion-captions --limit 20 exited non-zero: $(cat "$TMP/err")"
fi
n_png=$(find "$TMP/fc" -name '*.png' | wc -l)
[ "$n_png" -eq 20 ] || fail "expected 20 PNGs, found $n_png"
for i in 00000 00019; do
    [ -f "$TMP/fc/$i.png" ] || fail "missing $i.png"
    is_png "$TMP/fc/$i.png" || fail "$i.png is not a PNG"
done
[ ! -e "$TMP/fc/00020.png" ] || fail "--limit 20 wrote 00020.png"
meta="$TMP/fc/metadata.jsonl"
[ -f "$meta" ] || fail "no metadata.jsonl"
[ "$(wc -l <"$meta")" -eq 20 ] || fail "metadata.jsonl has $(wc -l <"$meta") lines, expected 20"
[ "$(head -n1 "$meta" | sed 's/.*"file_name":"\([^"]*\)".*/\1/')" = "00000.png" ] || fail "first line is not 00000.png"
# every line: file_name, text, colour, class; the text names the colour and the class; the
# file exists; no held-out pair in the train split
line_no=0
while IFS= read -r line; do
    line_no=$((line_no + 1))
    file=$(printf '%s' "$line" | sed -n 's/.*"file_name":"\([^"]*\)".*/\1/p')
    text=$(printf '%s' "$line" | sed -n 's/.*"text":"\([^"]*\)".*/\1/p')
    colour=$(printf '%s' "$line" | sed -n 's/.*"colour":"\([^"]*\)".*/\1/p')
    class=$(printf '%s' "$line" | sed -n 's/.*"class":"\([^"]*\)".*/\1/p')
    if [ -z "$file" ] || [ -z "$text" ] || [ -z "$colour" ] || [ -z "$class" ]; then
        fail "line $line_no lacks a field: $line"
        continue
    fi
    [ "$file" = "$(printf '%05d.png' $((line_no - 1)))" ] || fail "line $line_no: file_name $file"
    [ -f "$TMP/fc/$file" ] || fail "line $line_no: $file does not exist"
    case "$colour" in white | red | green | blue | yellow | purple | orange | cyan) ;; *) fail "line $line_no: colour '$colour'" ;; esac
    case " $text " in *" $colour "*) ;; *) fail "line $line_no: text '$text' lacks colour '$colour'" ;; esac
    case " $text " in *" $class "*) ;; *) fail "line $line_no: text '$text' lacks class '$class'" ;; esac
    case "$colour $class" in
        "purple sandal" | "orange dress" | "cyan bag" | "yellow coat" | "green ankle boot" | \
            "blue pullover" | "red shirt" | "white trousers")
            fail "line $line_no: held-out pair '$colour $class' in the train split" ;;
    esac
done <"$meta"
# Fashion-MNIST train item 0 is an ankle boot
head -n1 "$meta" | grep -q '"class":"ankle boot"' || fail "item 0 is not an ankle boot"

# ---- determinism: the same command writes the same bytes; another seed changes colours
"$T2I" data fashion-captions --split train --out "$TMP/fc2" --limit 20 >/dev/null 2>&1 || fail "second run failed"
cmp -s "$meta" "$TMP/fc2/metadata.jsonl" || fail "metadata differs between two runs"
cmp -s "$TMP/fc/00007.png" "$TMP/fc2/00007.png" || fail "00007.png differs between two runs"
"$T2I" data fashion-captions --split train --out "$TMP/fc3" --limit 20 --seed 7 >/dev/null 2>&1 || fail "--seed 7 failed"
cmp -s "$meta" "$TMP/fc3/metadata.jsonl" && fail "--seed 7 gave the same metadata as the default seed"

# ---- test split
"$T2I" data fashion-captions --split test --out "$TMP/fct" --limit 5 >/dev/null 2>&1 || fail "test split failed"
[ "$(wc -l <"$TMP/fct/metadata.jsonl")" -eq 5 ] || fail "test split: expected 5 lines"

# ---- fashion-mnist class folders
"$T2I" data fashion-mnist --split test --out "$TMP/fm" --limit 30 >/dev/null 2>"$TMP/err" || fail "fashion-mnist failed: $(cat "$TMP/err")"
[ "$(find "$TMP/fm" -mindepth 1 -maxdepth 1 -type d | wc -l)" -eq 10 ] || fail "expected 10 class folders"
[ -d "$TMP/fm/9_ankle_boot" ] && [ -d "$TMP/fm/0_t-shirt" ] || fail "class folder names"
[ "$(find "$TMP/fm" -name '*.png' | wc -l)" -eq 30 ] || fail "expected 30 PNGs in class folders"

# ---- errors: non-zero exit and exactly one line naming the problem
check_error "train or test" "$T2I" data fashion-captions --split valid --out "$TMP/bad"
[ ! -e "$TMP/bad" ] || fail "a bad split still created the output folder"
check_error "train or test" "$T2I" data fashion-mnist --split nope --out "$TMP/bad"
check_error "--out" "$T2I" data fashion-captions --split train
check_error "--limit" "$T2I" data fashion-captions --out "$TMP/bad" --limit -3
check_error "unknown option" "$T2I" data fashion-captions --out "$TMP/bad" --colour red
check_error "bogus" "$T2I" data bogus
check_error "apt-get install dataset-fashion-mnist" \
    env T2I_FASHION_MNIST_DIR=/nonexistent/fm "$T2I" data fashion-captions --out "$TMP/bad"

# ---- help at each level
"$T2I" data --help | grep -q "fashion-captions" || fail "t2i data --help does not list fashion-captions"
"$T2I" data fashion-captions --help | grep -q -- "--limit" || fail "fashion-captions --help lacks --limit"
"$T2I" data fashion-mnist --help | grep -q -- "--split" || fail "fashion-mnist --help lacks --split"

finish
