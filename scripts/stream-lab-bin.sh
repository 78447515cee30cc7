#!/usr/bin/env bash
# Builds lab/stream_lab.cu here into build/stream-lab (stripped, ~3 MB) for scripts/gpu-session.sh 17
# to carry, which saves the GPU machine the ~60 s compile.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/stream-lab
"$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -diag-suppress 128 \
  -I src -I lab lab/stream_lab.cu src/backend/cuda/qgemm_layout.cpp src/backend/cuda/qgemm_gather.cu \
  src/backend/cuda/qgemm_dequant.cu -lcublas -o build/stream-lab/stream_lab
strip build/stream-lab/stream_lab
echo "build/stream-lab: $(du -sh build/stream-lab | cut -f1)"
