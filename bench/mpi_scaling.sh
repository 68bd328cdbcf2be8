#!/usr/bin/env bash
# mpi_scaling.sh - data-parallel step time of B1, B2 and B5 on this machine: 1 process x 1
# thread, 1 process x 2 threads, 2 ranks x 1 thread (mpirun), through the real trainers
# (`gan train --arch b1`, `dalle train --preset b2`, `vq train --preset b5`) at their
# benchmark batches (64, 32, 64), reading step_ms from metrics.jsonl (the median over the
# steps after the first WARM) and, for 2 ranks, the trainer's own line on communication
# (time rank 0 spent in sums and gathers, waiting included, and bytes a step).
#
#   bash bench/mpi_scaling.sh [--steps N] [--warm W] [--t2i PATH]    (defaults 30, 5, build/t2i)
#
# Prints one line per model and layout, and the machine's load before and after, since
# other work on the cores changes every figure. Needs mpirun (openmpi-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
T2I=build/t2i STEPS=30 WARM=5
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --warm) WARM=$2; shift 2 ;;
    --t2i) T2I=$2; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "mpi_scaling: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v mpirun >/dev/null || { echo "mpi_scaling: mpirun is missing (apt-get install openmpi-bin)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 T2I_PROGRESS_SECONDS=1000
TMP=$(mktemp -d /tmp/t2i-mpi-scaling-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
     "$(grep -m1 -o -w -E 'avx2|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# codes for B2: the shipped VQ (8x8 grid, 512 codes) over 2048 FC32 items
"$T2I" vq encode --ckpt samples/models/vq.safetensors --data fashion-captions --limit 2048 --threads 2 \
  --out "$TMP/codes.safetensors" >/dev/null 2>&1

median_ms() { # run folder -> median step_ms after the warm-up steps
  python3 - "$1/metrics.jsonl" "$WARM" <<'PY'
import json, sys
ms = [json.loads(l)["step_ms"] for l in open(sys.argv[1]) if '"step_ms"' in l]
ms = sorted(ms[int(sys.argv[2]):])
print("%.1f" % ms[len(ms) // 2] if ms else "nan")
PY
}

run() { # name layout args...
  local name=$1 layout=$2
  shift 2
  local out="$TMP/$name-$layout" log="$TMP/$name-$layout.log"
  case $layout in
    1x1) "$T2I" "$@" --threads 1 --out "$out" >"$log" 2>&1 ;;
    1x2) "$T2I" "$@" --threads 2 --out "$out" >"$log" 2>&1 ;;
    2x1) mpirun -np 2 -x T2I_PROGRESS_SECONDS "$T2I" "$@" --threads 1 --out "$out" >"$log" 2>&1 ;;
  esac
  local comm
  comm=$(grep -o 'spent .* collectives' "$log" || true)
  printf "%-3s %s  step %7s ms  %s\n" "$name" "$layout" "$(median_ms "$out")" "$comm"
}

for layout in 1x1 1x2 2x1; do
  run B1 $layout gan train --arch b1 --data fashion-mnist --batch 64 --steps "$STEPS" --log-every 1 --sample-every 100000 \
    --ckpt-every 100000
done
for layout in 1x1 1x2 2x1; do
  run B2 $layout dalle train --codes "$TMP/codes.safetensors" --preset b2 --batch 32 --steps "$STEPS" --log-every 1 \
    --sample-every 100000 --ckpt-every 100000
done
for layout in 1x1 1x2 2x1; do
  run B5 $layout vq train --preset b5 --data fashion-captions --limit 4096 --batch 64 --steps "$STEPS" --log-every 1 \
    --sample-every 100000 --ckpt-every 100000
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
