#!/usr/bin/env bash
# replay.sh - builds the fuzz targets (clang, in build-fuzz/), replays each committed seed
# corpus, then fuzzes each target from it. Fails (exit 1) on any crash, leak, timeout or
# sanitizer report, and names the target and the input. CI runs it (.ci/run).
#
# The fuzzing is reproducible by default: each target runs a fixed number of inputs
# (-runs) from a fixed random seed (-seed), so the same commit gets the same verdict on
# every run, and a CI failure is repeated by the same command (the failing command line is
# printed). About 5-20 s a target on a 2-core machine; FUZZ_RUNS_SCALE=4 runs 4 times as
# many inputs with the same seeds. FUZZ_SECONDS=N explores instead: N seconds a target
# with a random seed (printed), for looking for new bugs, not for CI (tests/fuzz/README.md).
#
#   bash tests/fuzz/replay.sh                            # every target, fixed seeds and runs
#   bash tests/fuzz/replay.sh fuzz_image fuzz_prompts    # some targets
#   FUZZ_SECONDS=600 bash tests/fuzz/replay.sh fuzz_image  # explore for 10 minutes
#
# Installs clang and libFuzzer when they are missing (Debian 12: clang-14 and
# libclang-rt-14-dev, which holds libFuzzer). New inputs go to a copy of each corpus in
# build-fuzz/work/, removed afterwards; a finding is kept as build-fuzz/findings/<target>/crash-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-}
scale=${FUZZ_RUNS_SCALE:-1}
[[ "$scale" =~ ^[1-9][0-9]*$ ]] || { echo "replay: FUZZ_RUNS_SCALE must be a positive integer, not '$scale'" >&2; exit 2; }
[ -z "$seconds" ] || [[ "$seconds" =~ ^[1-9][0-9]*$ ]] ||
  { echo "replay: FUZZ_SECONDS must be a positive integer, not '$seconds'" >&2; exit 2; }
# target -> "seed runs": the runs take 5-18 s each on the 2-core machine of 2026-12-06 when
# it is lightly loaded (about 60 s each at a load of 10); inputs per second differ 100-fold
# between targets, hence the counts. Changing a seed or a count changes what CI tests.
declare -A plan=(
  [fuzz_safetensors]="101 250000" [fuzz_image]="102 8000" [fuzz_metadata]="103 250000"
  [fuzz_tokenizer]="104 20000" [fuzz_prompts]="105 500000" [fuzz_request]="106 350000"
  [fuzz_ckpt_json]="107 200000")
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_image fuzz_metadata fuzz_tokenizer fuzz_prompts fuzz_request
                                     fuzz_ckpt_json)
for t in "${targets[@]}"; do
  [ -n "${plan[$t]:-}" ] || { echo "replay: unknown target '$t' (known: ${!plan[*]})" >&2; exit 2; }
done

pkgs=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "replay: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

start=$(date +%s)
cmake -S . -B build-fuzz -DT2I_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null
echo "replay: built ${#targets[@]} targets in $(( $(date +%s) - start )) s" >&2

# libFuzzer records the operands of comparisons to steer its mutations, pointers among
# them, so address-space randomisation - and the size of the environment, which moves the
# stack - would make each run with the same seed take another path (measured: a different
# corpus every time). A fixed run therefore gets no randomisation (setarch -R), a fixed
# environment and one thread for OpenMP and OpenBLAS.
fixed=(env -i PATH=/usr/bin:/bin LC_ALL=C OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 setarch "$(uname -m)" -R)
if [ -z "$seconds" ] && ! "${fixed[@]}" true 2>/dev/null; then
  echo "replay: cannot turn off address randomisation here (setarch -R failed): runs are not reproducible" >&2
  fixed=(env -i PATH=/usr/bin:/bin LC_ALL=C OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)
fi
# The copies of the corpora are at a fixed relative path: the arguments are on the stack too.
work=build-fuzz/work
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  bin=build-fuzz/$t
  found=build-fuzz/findings/$t
  mkdir -p "$found" "$work"
  cp -r tests/fuzz/corpus/"$name" "$work/"
  dict=()
  [ -f tests/fuzz/"$name".dict ] && dict=(-dict=tests/fuzz/"$name".dict)
  # the corpus as it is, then fuzzing from a copy of it; -timeout: one input may not take
  # 30 s; -reload=0: the corpus is read once, so nothing but the seed steers the run
  read -r seed runs <<<"${plan[$t]}"
  if [ -n "$seconds" ]; then
    cmd=("$bin" -seed=0 -max_total_time="$seconds")
  else
    cmd=("${fixed[@]}" "$bin" -seed="$seed" -runs=$((runs * scale)))
  fi
  cmd+=(-timeout=30 -reload=0 -print_final_stats=1 -artifact_prefix="$found/" "${dict[@]}")
  if ! "$bin" -runs=0 -timeout=30 -artifact_prefix="$found/" tests/fuzz/corpus/"$name" >"$work/$name.replay.log" 2>&1; then
    echo "replay: $t FAILED on its committed corpus; last lines of the log:" >&2
    tail -n 40 "$work/$name.replay.log" >&2
    ls "$found" >&2
    failed=1
    continue
  fi
  t0=$(date +%s)
  if ! "${cmd[@]}" "$work/$name" >"$work/$name.log" 2>&1; then
    echo "replay: $t FAILED while fuzzing; last lines of its log:" >&2
    tail -n 40 "$work/$name.log" >&2
    ls "$found" >&2
    used=$(sed -n 's/^INFO: Seed: //p' "$work/$name.log" | head -n 1)
    echo "replay: to repeat this run: rm -rf $work/$name && mkdir -p $work && cp -r tests/fuzz/corpus/$name $work/ &&" \
         "${cmd[*]/#-seed=0/-seed=$used} $work/$name" >&2
    failed=1
    continue
  fi
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log")
  used=$(sed -n 's/^INFO: Seed: //p' "$work/$name.log" | head -n 1)
  echo "replay: $t ok: $(ls tests/fuzz/corpus/"$name" | wc -l) corpus inputs replayed, $n executions" \
       "(seed $used) in $(( $(date +%s) - t0 )) s, corpus $(ls "$work/$name" | wc -l) inputs" >&2
done
exit $failed
