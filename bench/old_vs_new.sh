#!/usr/bin/env bash
# old_vs_new.sh - the same benchmarks from two t2i binaries, side by side in one run.
#
#   bash bench/old_vs_new.sh OLD_T2I NEW_T2I [--threads 2] [--rounds 3] [NAME...]
#
# For each NAME (default: core b1 b2 b3 b4 b5) it runs `OLD bench NAME` and `NEW bench
# NAME` alternately --rounds times (so drifting machine load hits both), then prints per
# figure the median of each binary's runs and their ratio new / old (below 1: the new
# binary is faster for times, slower for rates). Use it to check that a change leaves the
# benchmarks no slower; absolute figures do not carry across machines, the ratio does.
set -euo pipefail
usage="usage: old_vs_new.sh OLD_T2I NEW_T2I [--threads N] [--rounds N] [NAME...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
old=$1 new=$2
shift 2
threads=2 rounds=3 names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(core b1 b2 b3 b4 b5)
for b in "$old" "$new"; do [ -x "$b" ] || { echo "old_vs_new.sh: $b: not an executable" >&2; exit 2; }; done
export OMP_NUM_THREADS=$threads
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for name in "${names[@]}"; do
  for r in $(seq "$rounds"); do
    for which in old new; do
      bin=$old
      [ "$which" = new ] && bin=$new
      "$bin" bench "$name" --threads "$threads" | tail -n 1 | sed "s/^{/{\"which\":\"$which\",/" >> "$tmp"
    done
  done
done
/usr/bin/python3 - "$tmp" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
skip = {"bench", "which", "threads", "path", "cpu"}
for name in dict.fromkeys(r["bench"] for r in rows):
    o = [r for r in rows if r["bench"] == name and r["which"] == "old"]
    n = [r for r in rows if r["bench"] == name and r["which"] == "new"]
    print(f"\n{name} ({o[0].get('threads', '?')} threads, medians of {len(o)} / {len(n)} runs)")
    print(f"  {'figure':28} {'old':>10} {'new':>10} {'new/old':>8}")
    for k in o[0]:
        if k in skip or not isinstance(o[0][k], (int, float)):
            continue
        a = statistics.median(r[k] for r in o)
        b = statistics.median(r[k] for r in n if k in r)
        print(f"  {k:28} {a:10.2f} {b:10.2f} {b / a if a else float('nan'):8.3f}")
PY
