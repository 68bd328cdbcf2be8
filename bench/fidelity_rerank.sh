#!/usr/bin/env bash
# fidelity_rerank.sh - how often a CLIP's choice among candidates generated once is right.
#
#   bash bench/fidelity_rerank.sh POOL[,POOL2...] CLIP[,CLIP2...] OUT [--threads 2]
#
# Several CLIPs (comma-separated) rank as an ensemble, as `t2i generate --clip A,B` does.
# POOL is a `t2i generate --prompts CAPTIONS --candidates N --top N` folder: every
# candidate kept, one folder per caption (rank_000.png ... in the generating CLIP's order).
# Made once, e.g. for the 80 captions of bench/fidelity.sh with its seed and 512 candidates:
#
#   build/t2i data fashion-captions --captions > runs/captions.txt
#   build/t2i generate --prompts runs/captions.txt --candidates 512 --top 512 --out runs/pool512
#
# Generation is the slow part and does not depend on the reranker, so each CLIP to compare
# then costs one pass of its image tower over the pool: this script ranks every caption's
# candidates with CLIP (`t2i clip rerank`), writes OUT/scores.json as `t2i generate` would
# (files through the symlinks OUT/pool0, ...), and judges the top 1 and the top 32 with `t2i eval
# fidelity`. With the same captions, seed and candidate count these are the figures
# bench/fidelity.sh's ranked run would give with that CLIP (`--clip` after its `--`).
# Several pools (comma-separated, e.g. one of the transformer's and one of the caption GAN's)
# are ranked together, caption by caption, as `--generator both` ranks its candidates.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: fidelity_rerank.sh POOL CLIP OUT [--threads N]" >&2; exit 2; }
pool=$1 clip=$2 out=$3
shift 3
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    *) echo "fidelity_rerank.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
IFS=, read -ra clips <<< "$clip"
for c in "${clips[@]}"; do [ -f "$c" ] || { echo "fidelity_rerank.sh: $c: no such file" >&2; exit 1; }; done
T2I=${T2I:-build/t2i}
mkdir -p "$out"
IFS=, read -ra pools <<< "$pool"
for i in "${!pools[@]}"; do
  p=${pools[$i]}
  [ -f "$p/scores.json" ] || { echo "fidelity_rerank.sh: $p: no scores.json (not a t2i generate folder)" >&2; exit 1; }
  ln -sfn "$(realpath "$p")" "$out/pool$i"
done
t0=$(date +%s)
/usr/bin/python3 - "$T2I" "$clip" "$out" "$threads" "${#pools[@]}" <<'EOF'
import json, os, subprocess, sys
t2i, clip, out, threads, npools = sys.argv[1:6]
folders = {}  # caption -> its folders, one per pool, in the first pool's order
for i in range(int(npools)):
    pool = os.path.join(out, "pool%d" % i)
    for e in json.load(open(os.path.join(pool, "scores.json"))):
        d = os.path.join(pool, os.path.dirname(e["file"]))
        if d not in folders.setdefault(e["caption"], []):
            folders[e["caption"]].append(d)
res = []
for cap, dirs in folders.items():
    if len(dirs) != int(npools):
        sys.exit("fidelity_rerank.sh: %r is in %d of the %s pools" % (cap, len(dirs), npools))
    imgs = sorted(os.path.join(d, f) for d in dirs for f in os.listdir(d) if f.startswith("rank_") and f.endswith(".png"))
    r = subprocess.run([t2i, "clip", "rerank", "--ckpt", clip, "--prompt", cap, "--top", "32", "--json",
                        "--threads", threads] + imgs, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("fidelity_rerank.sh: clip rerank of %r: %s" % (cap, r.stderr.strip()))
    for e in json.loads(r.stdout):
        rel = os.path.relpath(e["path"], out)
        res.append({"caption": cap, "rank": e["rank"] - 1, "score": e["score"] / 100.0, "file": rel})
json.dump(res, open(os.path.join(out, "scores.json"), "w"), indent=1)
print("reranked %d captions x %d candidates" % (len(folders), len(imgs)))
EOF
t1=$(date +%s)
echo "== top-1 of each caption's pool, ranked by $clip ($((t1 - t0)) s)"
$T2I eval fidelity "$out" --top 1 --threads "$threads"
echo "== all of the top 32"
$T2I eval fidelity "$out" --top 32 --threads "$threads"
