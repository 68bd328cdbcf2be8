#!/usr/bin/env bash
# setup.sh - install what a fresh Debian 12 machine lacks, then build t2i into build/.
#
#   bash cli/setup.sh            # Release build
#   T2I_WERROR=1 bash cli/setup.sh   # warnings are errors (the test command uses this)
#
# Needs root (or sudo) only when packages are missing. Idempotent: a second run only
# rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config git
      libopenblas-openmp-dev libpng-dev libjpeg62-turbo-dev libwebp-dev zlib1g-dev libstb-dev libcjson-dev libcmocka-dev
      libutf8proc-dev libmicrohttpd-dev libopenmpi-dev openmpi-bin
      curl  # tests/cli_serve.sh talks to `t2i serve` with it
      dataset-fashion-mnist mate-backgrounds
      gnome-backgrounds ukui-wallpapers lomiri-wallpapers lomiri-wallpapers-20.04  # sr train's photos, held out by package
      chromium chromium-driver  # tests/serve_browser.py drives the page of t2i serve in headless Chromium
      python3)  # the shell tests check JSON output with python3's json module (not in a minimal Debian)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

werror=OFF
[ "${T2I_WERROR:-0}" = "1" ] && werror=ON
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DT2I_WERROR=$werror >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built $(pwd)/build/t2i" >&2
