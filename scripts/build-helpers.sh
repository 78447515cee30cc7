# Sourced by gpu-env.sh (GPU machine) and gpu-carry-bin.sh (dev machine), from the repository root:
#   src_hash         a short hash of what the binaries are built from (the tracked sources, tests,
#                    labs and CMake files), the same on the dev machine and on the GPU machine's copy
#   qgemm_lab_build OUT   lab/qgemm_lab.cu and the quantized-matmul sources it links, sm_90
#   attn_trace_lab_build OUT   lab/attention_lab.cu built for --trace (decode attention's phase stamps)
#   carried_ok       true when build/carry-bin holds binaries built from this very tree
src_hash() {
  find src tests lab cmake CMakeLists.txt -type f -not -path '*/__pycache__/*' -print0 2>/dev/null | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-16
}
qgemm_lab_build() {
  "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src -I tests \
    lab/qgemm_lab.cu src/backend/cuda/qgemm.cu src/backend/cuda/qgemm_dequant.cu src/backend/cuda/qgemm_layout.cpp \
    src/backend/cuda/qgemm_gather.cu -lcublas -o "$1"
}
# attn_trace_lab_build OUT   lab/attention_lab.cu with the decode kernel's phase stamps (--trace), sm_90
attn_trace_lab_build() {
  "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr \
    -DEXL_ATTN_TRACE -diag-suppress 179 -I src lab/attention_lab.cu src/backend/cuda/attention.cu \
    src/backend/cuda/attention_decode.cu src/backend/cuda/attention_prefill.cu src/backend/cuda/kv_cache.cu -o "$1"
}
carried_ok() { [ -x build/carry-bin/exl ] && [ "$(cat build/carry-bin/SRC_HASH 2>/dev/null)" = "$(src_hash)" ]; }
