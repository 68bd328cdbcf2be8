#!/usr/bin/env bash
# fidelity.sh - caption fidelity of text-to-image generators over FC32's 80 captions.
#
#   bash bench/fidelity.sh [--generator dalle|gan|both] [--candidates 512] [--random 16]
#                          [--threads 2] [--out runs/fidelity] [-- extra generate options]
#
# For every canonical caption "a {colour} {class}" (8 colours x 10 classes; eight pairs are
# never seen in training) it runs `t2i generate` twice with the same seed:
#   random: --candidates R --top R     every candidate kept, unranked: the share of
#                                      correct images is what one random candidate scores;
#   ranked: --candidates N --top 32    CLIP keeps 32 of N; judged on rank 0 (the top-1) and
#                                      on all 32.
# and `t2i eval fidelity` judges class (the shipped Fashion-MNIST classifier) and colour
# (foreground pixels against the palette), printing all / held-out / seen lines. Models
# default to samples/models/ (pass --dalle, --gan, --clip after -- to use others).
set -euo pipefail
cd "$(dirname "$0")/.."
gen=dalle cand=512 rnd=16 threads=2 out=runs/fidelity extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --generator) gen=$2; shift 2 ;;
    --candidates) cand=$2; shift 2 ;;
    --random) rnd=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "fidelity.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
prompts=$out/captions.txt
T2I=${T2I:-build/t2i}  # another binary: T2I=path bash bench/fidelity.sh ...
$T2I data fashion-captions --captions > "$prompts"
t0=$(date +%s)
$T2I generate --prompts "$prompts" --generator "$gen" --candidates "$rnd" --top "$rnd" --threads "$threads" \
  --out "$out/$gen-random" "${extra[@]}" > "$out/$gen-random.log"
t1=$(date +%s)
$T2I generate --prompts "$prompts" --generator "$gen" --candidates "$cand" --top 32 --threads "$threads" \
  --out "$out/$gen-ranked" "${extra[@]}" > "$out/$gen-ranked.log"
t2=$(date +%s)
pool=$cand  # candidates CLIP ranks per caption: --candidates from each generator
[ "$gen" = both ] && pool=$((2 * cand))
echo "== $gen: one random candidate ($rnd per caption, all judged; $((t1 - t0)) s)"
$T2I eval fidelity "$out/$gen-random" --threads "$threads"
echo "== $gen: top-1 of $pool after CLIP reranking ($((t2 - t1)) s for 80 captions)"
$T2I eval fidelity "$out/$gen-ranked" --top 1 --threads "$threads"
echo "== $gen: all of the top 32 of $pool"
$T2I eval fidelity "$out/$gen-ranked" --top 32 --threads "$threads"
