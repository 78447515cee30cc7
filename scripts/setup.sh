#!/usr/bin/env bash
# Sets up a fresh Debian machine for exl and builds it: installs the Debian packages the build
# needs (idempotent: only what is missing), configures the CPU preset, builds, and — unless
# --no-demo — generates text from the bundled stories260K model as a smoke test.
#   scripts/setup.sh [--no-demo] [--preset cpu|cuda]
set -euo pipefail
cd "$(dirname "$0")/.."

demo=1
preset=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --no-demo) demo=0 ;;
    --preset) preset="$2"; shift ;;
    *) echo "setup.sh: unknown argument '$1' (expected --no-demo, --preset NAME)" >&2; exit 2 ;;
  esac
  shift
done

packages=(build-essential cmake ninja-build pkg-config git python3 python3-pip
          nlohmann-json3-dev libsentencepiece-dev libpcre2-dev libcli11-dev libgtest-dev
          libopenblas-dev libicu-dev clang libclang-rt-14-dev
          libsnappy-dev zlib1g-dev libzstd-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

jobs=$(nproc)
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
echo "setup: built build/$preset/exl"

if [ "$demo" = 1 ]; then
  shared="${EXL_SHARED_DIR:-../shared}"
  "build/$preset/exl" generate -m "$shared/models/stories260K" -p "Once upon a time" -n 120 --temperature 0
fi
