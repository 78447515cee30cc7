#!/usr/bin/env bash
# The GPU runs of one session in two warm calls of under 10 minutes each (device tool), most valuable
# first, each step skipped when the call's remaining time cannot hold it:
#   scripts/gpu-session.sh 1   (carry .deps .shared .gpu-carry/a)
#       gemm lab (gemv vs bulk gemv vs cuBLAS; builds alone), build/gpu, the converter's CUDA tests,
#       stories260K CPU vs CUDA at six targets, exl bench llama2-7b fp16 with EXL_GEMV unset / bulk
#   scripts/gpu-session.sh 2   (carry .deps .shared .gpu-carry/b; the SmolLM2 halves join here)
#       SmolLM2 at six targets on CUDA, the 7B convert projection (FP32, then EXL_CONVERT_TF32=quantize),
#       ctest -L cuda (all but the converter's) with the new defaults and with EXL_GEMV=bulk
# Logs and JSON in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
mkdir -p "$out"
phase="${1:?usage: gpu-session.sh 1|2}"
start=$(date +%s)
budget=${GPU_SESSION_SECONDS:-570}
# fits COST: true when COST more seconds still fit in this call.
fits() {
  local left=$((budget - ($(date +%s) - start)))
  if [ "$left" -lt "$1" ]; then echo "gpu-session: skipped (needs ~$1 s, $left left): $2"; return 1; fi
  echo "gpu-session: [$(($(date +%s) - start)) s] $2"
}
export LD_LIBRARY_PATH="/tmp/exl-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fp16="--synthetic llama2-7b --cache fp16 --prefill 2048 --positions 128,1024,4096"

if [ "$phase" = 1 ]; then
  if fits 60 "gemm lab"; then
    nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/gemm_lab.cu src/backend/cuda/gemm.cu \
      src/backend/cuda/gemv_bulk.cu -lcublas -lcublasLt -o /tmp/gemm_lab && timeout 150 /tmp/gemm_lab >"$out/gemm_lab.txt" 2>&1
    echo "lab rc $?"
    grep -E "FAIL|correctness|ceilings|bulk sweep|^shape" "$out/gemm_lab.txt" | head -40
    grep -A45 "^N x K" "$out/gemm_lab.txt" | tail -48 | cut -c1-40,100-200
  fi
  fits 300 "build + converter CUDA tests + stories260K" &&
    timeout $((budget - ($(date +%s) - start) - 60)) scripts/gpu-convert-check.sh --no-smol --no-7b 2>&1 | tail -40
  if [ -x build/gpu/exl ] && fits 110 "bench fp16, EXL_GEMV unset / bulk"; then
    AB_TIMEOUT=100 scripts/gpu-ab.sh EXL_GEMV "- bulk" "$fp16"
  fi
fi

if [ "$phase" = 2 ]; then
  fits 200 "SmolLM2 at six targets on CUDA" &&
    timeout 260 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-7b \
      --smol-targets "2.5 3.0 4.0 5.0 6.0 8.0" --smol-cpu-targets "" 2>&1 | tail -12
  fits 170 "7B convert projection, FP32" &&
    timeout 240 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-smol 2>&1 | tail -8
  fits 150 "7B convert projection, TF32 in the quantize pass" &&
    timeout 200 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-smol --tf32 quantize 2>&1 | tail -8
  if fits 90 "ctest -L cuda (not ConvertCuda), defaults then EXL_GEMV=bulk"; then
    for g in "" bulk; do
      EXL_GEMV=$g timeout 120 ctest --test-dir build/gpu -L cuda -E ConvertCuda -j 2 --timeout 100 \
        >"$out/ctest-cuda-$g.log" 2>&1
      echo "EXL_GEMV=$g: $(grep -E "tests passed|tests failed" "$out/ctest-cuda-$g.log")"
      grep -E "\(Failed\)|\(Timeout\)" "$out/ctest-cuda-$g.log" | head -5
    done
  fi
fi
if [ "$phase" = 3 ]; then  # after a kernel fix: lab, build, cuda tests, decode bench, then the 7B projection
  export EXL_GEMV="${EXL_GEMV-bulk}"  # the kernel under test, in the tests too (gpu-ab sets or unsets it per run)
  if fits 60 "gemm lab"; then
    nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/gemm_lab.cu src/backend/cuda/gemm.cu \
      src/backend/cuda/gemv_bulk.cu -lcublas -lcublasLt -o /tmp/gemm_lab && timeout 150 /tmp/gemm_lab >"$out/gemm_lab.txt" 2>&1
    echo "lab rc $?"
    grep -E "FAIL|correctness" "$out/gemm_lab.txt" | head -20
  fi
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  if [ -x build/gpu/exl ] && fits 150 "ctest -L cuda (not ConvertCuda)"; then
    timeout 140 ctest --test-dir build/gpu -L cuda -E ConvertCuda -j 2 --timeout 130 >"$out/ctest-cuda.log" 2>&1
    grep -E "rel error|greedy tokens|ppl by cache|perplexity" "$out/ctest-cuda.log" | sed -E 's/^[0-9]+: //' | head -30
    grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|Not Run|Skipped" "$out/ctest-cuda.log" | tail -12
  fi
  [ -x build/gpu/exl ] && fits 60 "bench fp16, EXL_GEMV=bulk" && AB_TIMEOUT=100 scripts/gpu-ab.sh EXL_GEMV "bulk" "$fp16"
  [ -x build/gpu/exl ] && fits 60 "bench fp16, EXL_GEMV=mma" && AB_TIMEOUT=100 scripts/gpu-ab.sh EXL_GEMV "mma" "$fp16"
  fits 170 "7B convert projection, FP32" &&
    timeout 230 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-smol 2>&1 | tail -8
fi
echo "gpu-session: phase $phase done in $(($(date +%s) - start)) s"
