#!/usr/bin/env bash
# prompt.sh - image prompts (completion, inpainting) and fine-tuning the shipped
# transformer, measured on FC32 test images (bench/RESULTS.md "Image prompts").
#
#   bash bench/prompt.sh [--n 16] [--candidates 16] [--steps 150] [--threads 2]
#                        [--out runs/prompt] [complete] [inpaint] [finetune]
# (no part named: all three). Short runs: the machine is shared.
#
# complete: for each of the first N test images, `t2i generate` with its own caption
#   "a {colour} {class}" (a) from the top half (--image --keep-rows 0.5) and (b) from
#   scratch, same seed, and (c) from the top half with a contradicting caption (the
#   colour four places on in FC32's palette); every candidate is judged by `t2i eval
#   fidelity` (--top 0) and so is the best of each image after CLIP (--top 1); for (c)
#   also against the image's own colour, and the colour of the redrawn bottom half alone
#   (caption's, image's or another: which one wins).
# inpaint: the centre 16x16 pixels (token cells 2..5 of 8x8) redrawn with the image's
#   own caption, without and with 2 refinement passes, and with 2 and --blend (kept
#   cells decoded with the rest, not pasted): fidelity, and the seam: the mean
#   absolute pixel difference (0-255) across the square's border in the results against
#   the same pairs of pixels in the image's VQ reconstruction (no mask), also split into
#   the top+left sides and the bottom+right ones (kept cells after the redrawn ones).
# finetune: the shipped transformer fine-tuned (--init) for --steps on 2048 FC32 training
#   images whose captions are rephrased "{class} coloured {colour}" (a phrasing FC32 never
#   uses); fidelity of the 80 canonical pairs in that phrasing, 8 candidates each (all
#   judged) before and after, and of the usual "a {colour} {class}" before and after
#   (forgetting).
set -euo pipefail
cd "$(dirname "$0")/.."
n=16 cand=16 steps=150 threads=2 out=runs/prompt parts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n=$2; shift 2 ;;
    --candidates) cand=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    complete|inpaint|finetune) parts+=("$1"); shift ;;
    *) echo "prompt.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ ${#parts[@]} -eq 0 ] && parts=(complete inpaint finetune)
T2I=${T2I:-build/t2i}
PY="python3 bench/prompt_eval.py"
export T2I_PROGRESS_SECONDS=1000
mkdir -p "$out"
$T2I data fashion-captions --split test --limit "$n" --out "$out/test" >/dev/null
mapfile -t own < <($PY captions "$out/test/metadata.jsonl" "a {colour} {class}")
colours=(red orange yellow green cyan blue purple white)
G=(generate --candidates "$cand" --top "$cand" --batch "$cand" --threads "$threads" --seed 1)
fid() { $T2I eval fidelity "$1" --threads "$threads" --top "$2" --json; }

for part in "${parts[@]}"; do
  case $part in
  complete)
    t0=$(date +%s)
    for ((i = 0; i < n; i++)); do
      img=$(printf "%s/test/%05d.png" "$out" "$i")
      col=$(sed -n "$((i + 1))p" "$out/test/metadata.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["colour"])')
      for k in "${!colours[@]}"; do [ "${colours[$k]}" = "$col" ] && other=${colours[$(((k + 4) % 8))]}; done
      contra="a $other ${own[$i]#a $col }"
      $T2I "${G[@]}" --prompt "${own[$i]}" --image "$img" --keep-rows 0.5 --out "$out/complete/$i" >/dev/null
      $T2I "${G[@]}" --prompt "${own[$i]}" --out "$out/scratch/$i" >/dev/null
      $T2I "${G[@]}" --prompt "$contra" --image "$img" --keep-rows 0.5 --out "$out/contra/$i" >/dev/null
    done
    t1=$(date +%s)
    for c in complete scratch contra; do $PY merge "$out/$c-all" "$out/$c"/*; done
    $PY merge --caption-from-image "$out/test/metadata.jsonl" "$out/contra-own-all" "$out/contra"/*
    echo "== complete: $n images x $cand candidates x 3 conditions in $((t1 - t0)) s"
    for c in complete scratch contra contra-own; do
      echo "$c all: $(fid "$out/$c-all" 0)"
      echo "$c top1: $(fid "$out/$c-all" 1)"
    done
    echo "contra bottom half: $($PY halves "$out/test/metadata.jsonl" "$out/contra"/*)"
    ;;
  inpaint)
    python3 - "$out/centre.png" <<'EOF2'
import struct, sys, zlib
rows = b"".join(b"\0" + bytes(255 if 8 <= x < 24 and 8 <= y < 24 else 0 for x in range(32)) for y in range(32))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
EOF2
    for run in 0 2 2b; do
      passes=${run%b} blend=()
      [ "$run" = 2b ] && blend=(--blend)
      t0=$(date +%s)
      for ((i = 0; i < n; i++)); do
        img=$(printf "%s/test/%05d.png" "$out" "$i")
        $T2I "${G[@]}" --prompt "${own[$i]}" --image "$img" --mask "$out/centre.png" --passes $passes "${blend[@]}" \
          --out "$out/inpaint$run/$i" >/dev/null
      done
      t1=$(date +%s)
      $PY merge "$out/inpaint$run-all" "$out/inpaint$run"/*
      echo "== inpaint, $passes refinement passes ${blend[*]}: $n images x $cand candidates in $((t1 - t0)) s"
      echo "inpaint$run all: $(fid "$out/inpaint$run-all" 0)"
      echo "inpaint$run top1: $(fid "$out/inpaint$run-all" 1)"
      echo "inpaint$run seam: $($PY seam 2 6 "$out/inpaint$run"/*)"
    done
    ;;
  finetune)
    ft=$out/finetune
    mkdir -p "$ft"
    $T2I data fashion-captions --split train --limit 2048 --out "$ft/data" >/dev/null
    python3 - "$ft/data/metadata.jsonl" <<'EOF3'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
with open(sys.argv[1], "w") as f:
    for r in rows:
        r["text"] = "%s coloured %s" % (r["class"], r["colour"])
        f.write(json.dumps(r) + "\n")
EOF3
    $T2I vq encode --ckpt samples/models/vq.safetensors --data "$ft/data" --threads "$threads" \
      --out "$ft/codes.safetensors" >/dev/null
    t0=$(date +%s)
    $T2I dalle train --init samples/models/dalle.safetensors --codes "$ft/codes.safetensors" --steps "$steps" \
      --batch 32 --lr 1e-4 --warmup 10 --sample-every 0 --threads "$threads" --out "$ft/run" > "$ft/train.log"
    t1=$(date +%s)
    $T2I data fashion-captions --captions | sed -E 's/^an? ([a-z]+) (.*)$/\2 coloured \1/' > "$ft/new.txt"
    $T2I data fashion-captions --captions > "$ft/old.txt"
    F=(generate --candidates 8 --top 8 --batch 8 --threads "$threads" --seed 1)
    $T2I "${F[@]}" --prompts "$ft/new.txt" --out "$ft/before" >/dev/null 2>"$ft/before.err"
    $T2I "${F[@]}" --prompts "$ft/old.txt" --out "$ft/before_old" >/dev/null
    $T2I "${F[@]}" --prompts "$ft/new.txt" --dalle "$ft/run/checkpoint.safetensors" --out "$ft/after" >/dev/null 2>"$ft/after.err"
    $T2I "${F[@]}" --prompts "$ft/old.txt" --dalle "$ft/run/checkpoint.safetensors" --out "$ft/after_old" >/dev/null
    echo "== finetune: $steps steps (batch 32) in $((t1 - t0)) s: $(tail -1 "$ft/train.log")"
    echo "before (shipped), new phrasing: $(fid "$ft/before" 0)"
    echo "after, new phrasing: $(fid "$ft/after" 0)"
    echo "before (shipped), usual phrasing: $(fid "$ft/before_old" 0)"
    echo "after, usual phrasing: $(fid "$ft/after_old" 0)"
    ;;
  esac
done
