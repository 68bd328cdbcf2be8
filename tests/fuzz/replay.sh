#!/usr/bin/env bash
# replay.sh - builds the fuzz targets (clang, in build-fuzz/) and runs each one for a short
# fixed time from its committed seed corpus, after a plain replay of that corpus. Fails
# (exit 1) on any crash, leak, timeout or sanitizer report, and names the target and the
# input. CI runs it (.ci/run); tests/fuzz/README.md says how to run longer.
#
#   bash tests/fuzz/replay.sh              # every target, 20 s each
#   FUZZ_SECONDS=60 bash tests/fuzz/replay.sh fuzz_image fuzz_prompts
#
# Installs clang and libFuzzer when they are missing (Debian 12: clang-14 and
# libclang-rt-14-dev, which holds libFuzzer). New inputs go to a temporary copy of each
# corpus, removed afterwards; a finding is kept as build-fuzz/findings/<target>/crash-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-20}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_image fuzz_metadata fuzz_tokenizer fuzz_prompts fuzz_request
                                     fuzz_ckpt_json)

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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  bin=build-fuzz/$t
  found=build-fuzz/findings/$t
  mkdir -p "$found" "$work/$name"
  cp tests/fuzz/corpus/"$name"/* "$work/$name/"
  dict=()
  [ -f tests/fuzz/"$name".dict ] && dict=(-dict=tests/fuzz/"$name".dict)
  # the corpus as it is, then fuzzing from it; -timeout: one input may not take 30 s
  if ! "$bin" -runs=0 -timeout=30 -artifact_prefix="$found/" tests/fuzz/corpus/"$name" >"$work/$name.replay.log" 2>&1 ||
     ! "$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 -artifact_prefix="$found/" "${dict[@]}" \
        "$work/$name" >"$work/$name.log" 2>&1; then
    echo "replay: $t FAILED; last lines of its log:" >&2
    tail -n 40 "$work/$name.replay.log" "$work/$name.log" >&2 2>/dev/null || true
    ls "$found" >&2
    failed=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log")
  echo "replay: $t ok: $(ls tests/fuzz/corpus/"$name" | wc -l) corpus inputs replayed, $runs executions in ${seconds} s," \
       "corpus $(ls "$work/$name" | wc -l) inputs" >&2
done
exit $failed
