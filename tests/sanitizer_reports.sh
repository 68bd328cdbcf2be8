#!/usr/bin/env bash
# sanitizer_reports.sh - the reports AddressSanitizer and LeakSanitizer wrote while the tests
# of a sanitizer build ran (CMakeLists.txt points their log_path into DIR: a file per process,
# named after the program and its pid). CTest runs it as a fixture around the whole suite:
#   sanitizer_reports.sh --clear DIR   empties DIR before the first test
#   sanitizer_reports.sh DIR           after the last: prints every report, exits 1 if any
set -euo pipefail
if [ "${1:-}" = "--clear" ]; then
  rm -rf "${2:?usage: sanitizer_reports.sh [--clear] DIR}"
  mkdir -p "$2"
  exit 0
fi
dir=${1:?usage: sanitizer_reports.sh [--clear] DIR}
shopt -s nullglob
reports=("$dir"/*)
for r in "${reports[@]}"; do
  echo "==== $r"
  cat "$r"
done
if [ ${#reports[@]} -gt 0 ]; then
  echo "sanitizer_reports: ${#reports[@]} process(es) reported errors or leaks (above)" >&2
  exit 1
fi
echo "sanitizer_reports: no AddressSanitizer or LeakSanitizer report"
