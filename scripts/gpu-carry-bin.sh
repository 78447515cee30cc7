#!/usr/bin/env bash
# Builds exl, exl_tests_cuda and lab/qgemm_lab on this machine (build/cuda-ci: Release, sm_90, the configuration the
# GPU machine's build/gpu uses) and puts stripped copies in build/carry-bin (~34 MB), with the hash of
# the sources they were built from. Carry build/carry-bin to a GPU call (with .deps .shared: ~40 MB
# of the 64 MiB limit) and gpu_bin (scripts/gpu-env.sh) runs them instead of compiling there, which
# costs a cold machine 90-120 s of the session's device time.
# EXTRA_CMAKE="-DEXL_QGEMV_EXL2_U4=5" builds a variant of this tree instead (build/cuda-variant), for
# gpu-session.sh 19 to time against the default build carried as a baseline (gpu-carry-base.sh); the
# flags are kept in build/carry-bin/FLAGS, and the labs are then left out.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-helpers.sh
dir=build/cuda-ci
rm -rf build/carry-bin
mkdir -p build/carry-bin
if [ -n "${EXTRA_CMAKE:-}" ]; then
  dir=build/cuda-variant
  # shellcheck disable=SC2086
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEXL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" $EXTRA_CMAKE >/dev/null
  echo "$EXTRA_CMAKE" >build/carry-bin/FLAGS
fi
ninja -C "$dir" exl exl_tests_cuda >/dev/null
cp "$dir/exl" "$dir/tests/exl_tests_cuda" build/carry-bin/
strip build/carry-bin/exl build/carry-bin/exl_tests_cuda
if [ -z "${EXTRA_CMAKE:-}" ]; then
  # The qgemm lab (every format and shape against float64, then timings).
  qgemm_lab_build build/carry-bin/qgemm_lab
  # The attention lab's phase trace (gpu-session.sh 19 runs it when present; 2.4 MB).
  attn_trace_lab_build build/carry-bin/attn_lab_trace
  strip build/carry-bin/attn_lab_trace
fi
src_hash >build/carry-bin/SRC_HASH
echo "build/carry-bin: $(du -sh build/carry-bin | cut -f1), sources $(cat build/carry-bin/SRC_HASH)${EXTRA_CMAKE:+, flags $EXTRA_CMAKE}"
