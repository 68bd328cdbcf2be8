#!/usr/bin/env bash
# run_all.sh - every benchmark side by side with its PyTorch twin, in one run.
#
#   bash bench/run_all.sh [--threads 2] [--rounds 2] [NAME...]     (default: all)
#
# For each NAME (core b1 b2 b3 b4 b5) it runs `build/t2i bench NAME` and
# `bench/torch_NAME.py` (for core, b4 and b5 through bench/torch_fastest.py: the better of
# NCHW and channels_last, figure by figure) alternately --rounds times (so drifting machine load hits both),
# keeps every JSON line in bench/results.jsonl (with a timestamp) and prints, per figure,
# the median of t2i's runs, the median of PyTorch's runs and their ratio (t2i / PyTorch:
# below 1 means t2i is faster for times, slower for rates).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 rounds=2 names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(core b1 b2 b3 b4 b5)
export OMP_NUM_THREADS=$threads
out=bench/results.jsonl
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tmp=$(mktemp)
for name in "${names[@]}"; do
  for r in $(seq "$rounds"); do
    build/t2i bench "$name" --threads "$threads" | tail -n 1 | sed "s/^{/{\"impl\":\"t2i\",\"round\":$r,\"time\":\"$stamp\",/" >> "$tmp"
    if [ "$name" = b1 ]; then args="bench"; else args=""; fi
    case "$name" in
      # twins with convolutions: the better of NCHW and channels_last (bench/torch_fastest.py)
      core|b4|b5) twin=(bench/torch_fastest.py "$name") ;;
      *) twin=("bench/torch_$name.py") ;;
    esac
    /usr/bin/python3 "${twin[@]}" --threads "$threads" $args | tail -n 1 | sed "s/^{/{\"round\":$r,\"time\":\"$stamp\",/" >> "$tmp"
  done
done
cat "$tmp" >> "$out"
/usr/bin/python3 - "$tmp" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
skip = {"bench", "impl", "round", "time", "threads"}
for name in dict.fromkeys(r["bench"] for r in rows):
    t = [r for r in rows if r["bench"] == name and r["impl"] == "t2i"]
    p = [r for r in rows if r["bench"] == name and r["impl"] == "pytorch"]
    print(f"\n{name} ({t[0]['threads']} threads, medians of {len(t)} / {len(p)} runs)")
    print(f"  {'figure':24} {'t2i':>10} {'pytorch':>10} {'t2i/pytorch':>12}")
    for k in t[0]:
        if k in skip or not isinstance(t[0][k], (int, float)):
            continue
        a = statistics.median(r[k] for r in t)
        b = statistics.median(r[k] for r in p if k in r) if any(k in r for r in p) else float("nan")
        print(f"  {k:24} {a:10.2f} {b:10.2f} {a / b if b == b and b else float('nan'):12.2f}")
    if "conv_shapes" in t[0] and any("conv_shapes" in r for r in p):
        print(f"  conv2d shapes, path {t[0].get('conv_path', '?')}: ms t2i / pytorch (ratio) for fwd, bwd-data, bwd-weight")
        for s in t[0]["conv_shapes"]:
            cells = []
            for i in range(3):
                a = statistics.median(r["conv_shapes"][s][i] for r in t)
                b = statistics.median(r["conv_shapes"][s][i] for r in p if "conv_shapes" in r)
                cells.append("-" if not b else f"{a:8.2f} / {b:8.2f} ({a / b:4.2f})")
            print(f"    {s:9} " + "  ".join(f"{c:28}" for c in cells))
PY
rm -f "$tmp"
