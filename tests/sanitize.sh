#!/usr/bin/env bash
# sanitize.sh - build t2i with AddressSanitizer, LeakSanitizer and UBSan into build-asan/ and
# run the whole test suite on that build (CI runs it after cli/test.sh; see .ci/run).
#
#   bash tests/sanitize.sh
#
# The packages are cli/setup.sh's (gcc brings the sanitizer runtimes); it runs first, so this
# also works alone on a fresh machine, and costs nothing when build/ is already up to date.
# RelWithDebInfo (-O2 -g): the suite's training and CLIP runs are compute-bound, and -O0 would
# add its slowdown to ASan's; -g keeps file:line in the reports. (Its -DNDEBUG changes nothing:
# t2i checks contracts with T2I_ASSERT, which stays on.) CMakeLists.txt sets the sanitizer
# options of every test: a finding fails it, and the test sanitizer_reports lists them all.
set -euo pipefail
cd "$(dirname "$0")/.."
T2I_WERROR=1 bash cli/setup.sh
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DT2I_SANITIZE=ON -DT2I_WERROR=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
ctest --test-dir build-asan -j2 --output-on-failure --timeout 900
