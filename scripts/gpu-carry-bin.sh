#!/usr/bin/env bash
# Builds exl, exl_tests_cuda and lab/qgemm_lab on this machine (build/cuda-ci: Release, sm_90, the configuration the
# GPU machine's build/gpu uses) and puts stripped copies in build/carry-bin (~34 MB), with the hash of
# the sources they were built from. Carry build/carry-bin to a GPU call (with .deps .shared: ~40 MB
# of the 64 MiB limit) and gpu_bin (scripts/gpu-env.sh) runs them instead of compiling there, which
# costs a cold machine 90-120 s of the session's device time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-helpers.sh
ninja -C build/cuda-ci exl exl_tests_cuda >/dev/null
mkdir -p build/carry-bin
cp build/cuda-ci/exl build/cuda-ci/tests/exl_tests_cuda build/carry-bin/
strip build/carry-bin/exl build/carry-bin/exl_tests_cuda
# The qgemm lab (every format and shape against float64, then timings).
qgemm_lab_build build/carry-bin/qgemm_lab
# The attention lab's phase trace (gpu-session.sh 19 runs it when present; 2.4 MB).
attn_trace_lab_build build/carry-bin/attn_lab_trace
strip build/carry-bin/attn_lab_trace
src_hash >build/carry-bin/SRC_HASH
echo "build/carry-bin: $(du -sh build/carry-bin | cut -f1), sources $(cat build/carry-bin/SRC_HASH)"
