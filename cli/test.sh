#!/usr/bin/env bash
# test.sh - set up (packages, build with warnings as errors) and run the whole test suite.
# This is the README's test command and what CI (.ci/run) runs.
set -euo pipefail
cd "$(dirname "$0")/.."
T2I_WERROR=1 bash cli/setup.sh
ctest --test-dir build -j2 --output-on-failure --timeout 600
