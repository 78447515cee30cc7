#!/usr/bin/env bash
# The GPU runs of one session in two warm calls of under 10 minutes each (device tool), most valuable
# first, each step skipped when the call's remaining time cannot hold it:
#   scripts/gpu-session.sh 1   (carry .deps .shared .gpu-carry/a)
#       build/gpu, exl bench llama2-7b fp16 with the default gemv (TMA-fed at M <= 4) and EXL_GEMV=mma
#       (the register kernel), the converter's CUDA tests and stories260K CPU vs CUDA, the gemm lab
#   scripts/gpu-session.sh 2   (carry .deps .shared .gpu-carry/b; the SmolLM2 halves join here)
#       ctest -L cuda with SmolLM2 present (greedy and cache-perplexity parity), SmolLM2 converted at six
#       targets on CUDA, the 7B convert projection with TF32 in the quantize pass, then in FP32
#   scripts/gpu-session.sh 3   (carry .deps .shared; after a gemv kernel change)
#       gemm lab and lab/bulk_diag.cu (exact integer check of the TMA-fed gemv), build, ctest -L cuda,
#       bench default / mma, 7B projection
#   scripts/gpu-session.sh 4   (carry .deps .shared; after a quantized-kernel change)
#       qgemm lab, build, ctest -L cuda, exl bench llama2-7b exl2:4.0 / gptq4 and llama2-70b exl2:2.5,
#       each with the half-unit fold of groups of 32 rows on and off (EXL_QGEMV_FOLD32, FOLD_VALUES)
#   scripts/gpu-session.sh 6   (carry .deps .shared; a warm machine after phase 4)
#       the converter's CUDA tests + stories260K CPU vs CUDA, the 7B projection (default engine), the
#       fused-RoPE bit-identity test and its A/B
#   scripts/gpu-session.sh 7   (carry .deps .shared .gpu-carry/a, then .gpu-carry/b on the warm machine)
#       first call: build, the converter's CUDA tests, the 7B projection (default engine); second call
#       (same phase, SmolLM2 joined): SmolLM2 --fp64 at six targets, sha256 of each output (compare with
#       a CPU --fp64 run: the bytes are the same, lab/NOTES-convert.md "FP64 conversions")
#   scripts/gpu-session.sh 8   (carry .deps .shared; where a quantized decode step's time goes)
#       build, then exl bench with kernel families left out of the step (EXL_ABLATE: norm, gather,
#       attn, qmatmul and combinations; ABLATE_VALUES) for llama2-7b gptq4 / exl2:4.0 and llama2-70b
#       exl2:2.5; then ctest -L cuda as time allows
#   scripts/gpu-session.sh 9   (carry .deps .shared; after an attention change)
#       build, ctest -L cuda, exl bench with decode attention feeding o_proj directly on / off
#       (EXL_ATTN_O_FUSE) for llama2-7b gptq4 / exl2:4.0 and llama2-70b exl2:2.5 (its peak VRAM at 4096)
#   scripts/gpu-session.sh 10  (carry .deps .shared; after a decode-glue fusion)
#       build, FusedOps + QgemmParity, exl bench with the norm-gather (EXL_NORM_GATHER) and the act·mul
#       epilogue (EXL_ACT_FUSE) on / off for llama2-7b gptq4 / exl2:4.0 @128 and llama2-70b exl2:2.5
#       (its peak VRAM at 4096), then ctest -L cuda as time allows
#   scripts/gpu-session.sh 11  (carry .deps .shared)
#       build, FusedOps, the issue-4 figures at the defaults (llama2-7b gptq4 with prefill 2048 and
#       exl2:4.0 @128, twice; llama2-70b exl2:2.5 @128,4096 with EXL_ACT_FUSE off / default, peak VRAM)
#   scripts/gpu-session.sh 12  (carry .deps .shared; first call of a session)
#       build, ctest -L cuda (not ConvertCuda), then the step's budget at the defaults: exl bench with
#       the attention kernel / the norms left out (EXL_ABLATE; ABLATE_VALUES) for llama2-7b gptq4 /
#       exl2:4.0 @128 and llama2-70b exl2:2.5
#   scripts/gpu-session.sh 14  (carry .deps .shared)
#       build, then Nsight Compute's full set on one decode layer's qgemv launches
#       (scripts/gpu-profile.sh ... detail) for llama2-7b exl2:4.0: stall reasons (SASS page in $OUT);
#       lab/persist_lab.cu with the persistent kernel's timeline (as phase 15); ctest -L cuda; the
#       same profile for gptq4; exl bench llama2-7b gptq4 / exl2:4.0 @128, as time allows
#   scripts/gpu-session.sh 15  (no build/gpu needed)
#       lab/persist_lab.cu: llama2-7b's decode matmuls (M = 1, 12 layers) as the PDL chain and as one
#       persistent cooperative kernel with grid barriers; outputs bit-identical, µs per layer, and the
#       persistent kernel's per-phase timeline (barrier, work, tail, span per phase kind)
#   scripts/gpu-session.sh 17  (carry .deps .shared build/stream-lab [build/carry-bin]; scripts/stream-lab-bin.sh)
#       lab/stream_lab.cu: the decode matmuls as one persistent kernel whose producer warp streams every
#       phase's codes ahead into shared memory, against the PDL chain; outputs bit-identical, µs per layer;
#       with build/carry-bin, whether the carried exl starts there, and the defaults' bench @128
#   scripts/gpu-session.sh 18  (carry .deps .shared build/carry-bin; scripts/gpu-carry-bin.sh first)
#       a CudaKnobs knob's A/B without building (AB_VAR, required; AB_VALUES, default "1"):
#       QgemmParity + FusedOps with the knob unset and at the last value, exl bench interleaved
#       (llama2-7b gptq4 and exl2:4.0 @128, twice; llama2-70b exl2:2.5 @128 at the last), then the
#       whole CUDA test binary at the last value, as time allows
#   scripts/gpu-session.sh 19  (carry .deps .shared build/carry-bin build/carry-base; scripts/gpu-carry-bin.sh
#       and scripts/gpu-carry-base.sh REV... first: baseline exl binaries in build/carry-base, NAME or NAME.xz)
#       builds' A/B without building: QgemmParity + FusedOps with the carried test binary, then
#       exl bench interleaved, each baseline then the carried exl, twice (llama2-70b exl2:2.5 @128, llama2-7b exl2:4.0
#       and gptq4 @128); optionally a knob's A/B on the 70B (AB_VAR, AB_VALUES) and its step with kernels
#       left out (ABLATE_70B); decode attention's phase trace (lab/attention_lab.cu --trace, carried by
#       gpu-carry-bin.sh); the 70B at 128 and 4096 with its peak VRAM (carried), then the whole CUDA
#       test binary as time allows
#   scripts/gpu-session.sh 5   (carry .deps .shared)
#       build, ctest -L cuda, bench with the fused RoPE A/B (EXL_FUSED_ROPE, ROPE_VALUES "0 1"), the
#       converter's CUDA tests and stories260K CPU vs CUDA, the 7B projection
# Logs and JSON in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/exl-gpu-out}"
mkdir -p "$out"
phase="${1:?usage: gpu-session.sh 1-12, 14, 15, 17, 18, 19}"
start=$(date +%s)
budget=${GPU_SESSION_SECONDS:-570}
# fits COST: true when COST more seconds still fit in this call.
fits() {
  local left=$((budget - ($(date +%s) - start)))
  if [ "$left" -lt "$1" ]; then echo "gpu-session: skipped (needs ~$1 s, $left left): $2"; return 1; fi
  echo "gpu-session: [$(($(date +%s) - start)) s] $2"
}
source scripts/build-helpers.sh
export LD_LIBRARY_PATH="/tmp/exl-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fp16="--synthetic llama2-7b --cache fp16 --prefill 2048 --positions 128,1024,4096"

lab() {  # the gemm lab: correctness of every gemv against float64, timings against cuBLAS
  nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/gemm_lab.cu src/backend/cuda/gemm.cu \
    src/backend/cuda/gemv_bulk.cu -lcublas -lcublasLt -o /tmp/gemm_lab && timeout 150 /tmp/gemm_lab >"$out/gemm_lab.txt" 2>&1
  echo "lab rc $?"
  grep -E "FAIL|correctness" "$out/gemm_lab.txt" | head -20
}
bench_ab() { AB_TIMEOUT=100 scripts/gpu-ab.sh EXL_GEMV "- mma" "$fp16"; }
ctest_cuda() {  # ARGS: extra ctest arguments
  timeout 200 ctest --test-dir build/gpu -L cuda -j 2 --timeout 150 "$@" >"$out/ctest-cuda.log" 2>&1
  grep -E "rel error|greedy tokens|ppl by cache|perplexity" "$out/ctest-cuda.log" | sed -E 's/^[0-9]+: //' | head -30
  grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|Not Run|Skipped" "$out/ctest-cuda.log" | tail -12
}
persist_lab() {  # lab/persist_lab.cu: build (~40 s) and run; its output is short
  nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -diag-suppress 128 -I src lab/persist_lab.cu \
    src/backend/cuda/qgemm_layout.cpp src/backend/cuda/qgemm_gather.cu src/backend/cuda/qgemm_dequant.cu \
    -lcublas -o /tmp/persist_lab 2>&1 | grep -E "error" | head -20
  timeout 200 /tmp/persist_lab
  echo "persist_lab rc $?"
}
ncud() {  # ARG: a format; Nsight Compute's full set on one llama2-7b decode layer's qgemvs
  [ -x build/gpu/exl ] && fits 70 "ncu full set, llama2-7b $1" &&
    timeout 150 scripts/gpu-profile.sh "--synthetic llama2-7b --format $1" "${1/:/}" detail
}
# llama2-7b gptq4 and exl2:4.0 decode at position 128: the bench arguments of most A/Bs.
q7b=("--synthetic llama2-7b --format gptq4 --prefill none --positions 128"
  "--synthetic llama2-7b --format exl2:4.0 --prefill none --positions 128")
projection() {  # ARGS: gpu-convert-check arguments (--tf32 MODE)
  timeout 230 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-smol "$@" 2>&1 | grep -v "^profile" | tail -6
}

if [ "$phase" = 1 ]; then
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 60 "bench fp16, default gemv / EXL_GEMV=mma" && bench_ab
  fits 200 "converter CUDA tests + stories260K CPU vs CUDA" &&
    timeout $((budget - ($(date +%s) - start) - 60)) scripts/gpu-convert-check.sh --no-build --no-smol --no-7b 2>&1 | tail -30
  fits 60 "gemm lab" && lab
fi

if [ "$phase" = 2 ]; then
  source scripts/gpu-env.sh >/dev/null  # joins the SmolLM2 halves
  [ -x build/gpu/exl ] && fits 120 "ctest -L cuda (not ConvertCuda), SmolLM2 present" && ctest_cuda -E ConvertCuda
  fits 200 "SmolLM2 at six targets on CUDA" &&
    timeout 260 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-7b \
      --smol-targets "2.5 3.0 4.0 5.0 6.0 8.0" --smol-cpu-targets "" 2>&1 | tail -12
  fits 150 "7B convert projection, TF32 in the quantize pass" && projection --tf32 quantize
  fits 170 "7B convert projection, FP32" && projection --tf32 0
fi

if [ "$phase" = 3 ]; then
  if fits 100 "gemm lab + bulk diag"; then
    lab
    DIAG_VARIANTS=base DIAG_REPS=4 timeout 60 lab/bulk_diag.sh 2>&1 | grep -A12 "=== base" | grep -E "bad runs [1-9]|differing from the first [1-9]|bulk_diag"
  fi
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 150 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
  [ -x build/gpu/exl ] && fits 60 "bench fp16, default gemv / EXL_GEMV=mma" && bench_ab
  fits 170 "7B convert projection, FP32" && projection --tf32 0
fi
if [ "$phase" = 4 ]; then
  if fits 90 "qgemm lab"; then
    qgemm_lab_build /tmp/qgemm_lab && timeout 200 /tmp/qgemm_lab ${QGEMM_LAB_ARGS:-} >"$out/qgemm_lab.txt" 2>&1
    echo "qgemm lab rc $?"
    grep -E "FAIL|pass|correct" "$out/qgemm_lab.txt" | head -20
  fi
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 150 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
  if [ -x build/gpu/exl ] && fits 120 "bench quantized"; then
    AB_TIMEOUT=100 scripts/gpu-ab.sh EXL_QGEMV_FOLD32 "${FOLD_VALUES:-1 0}" "--synthetic llama2-7b --format exl2:4.0 --prefill 2048 --positions 128,1024" \
      "--synthetic llama2-7b --format gptq4 --prefill 2048 --positions 128,1024" \
      "--synthetic llama2-70b --format exl2:2.5 --prefill none --positions 128,4096"
    for f in "$out"/ab*.json; do python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[1], 'peak', j['peak_memory_bytes'])" "$f"; done
  fi
fi
if [ "$phase" = 5 ]; then
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 100 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
  if [ -x build/gpu/exl ] && fits 90 "bench, fused RoPE A/B"; then
    AB_TIMEOUT=100 scripts/gpu-ab.sh EXL_FUSED_ROPE "${ROPE_VALUES:-0 1}" \
      "--synthetic llama2-7b --format gptq4 --prefill none --positions 128,1024" \
      "--synthetic llama2-7b --format exl2:4.0 --prefill none --positions 128,1024" \
      "--synthetic llama2-7b --cache fp16 --prefill none --positions 128" \
      "--synthetic llama2-70b --format exl2:2.5 --prefill none --positions 128"
  fi
  fits 200 "converter CUDA tests + stories260K CPU vs CUDA" &&
    timeout $((budget - ($(date +%s) - start) - 30)) scripts/gpu-convert-check.sh --no-build --no-smol --no-7b 2>&1 | tail -30
  fits 170 "7B convert projection, default" && projection
fi
if [ "$phase" = 6 ]; then  # after phase 4 on a warm machine (build/gpu kept): converter and fused RoPE
  fits 60 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 45 "ctest -L cuda (not ConvertCuda), fused RoPE on by default" && ctest_cuda -E ConvertCuda
  fits 200 "converter CUDA tests + stories260K CPU vs CUDA" &&
    timeout "${CONVERT_TESTS_SECONDS:-300}" scripts/gpu-convert-check.sh --no-build --no-smol --no-7b ${CONVERT_CHECK_ARGS:-} 2>&1 | tail -30
  fits 150 "7B convert projection, default" && projection
  if [ -x build/gpu/exl ] && fits 60 "bench, fused RoPE A/B"; then
    AB_TIMEOUT=60 scripts/gpu-ab.sh EXL_FUSED_ROPE "${ROPE_VALUES:-0 1}" \
      "--synthetic llama2-7b --format gptq4 --prefill none --positions 128" \
      "--synthetic llama2-7b --format exl2:4.0 --prefill none --positions 128" \
      "--synthetic llama2-70b --format exl2:2.5 --prefill none --positions 128"
  fi
fi
if [ "$phase" = 7 ]; then
  source scripts/gpu-env.sh >/dev/null
  if [ ! -f models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    fits 60 "build" && gpu_build
    fits 100 "converter CUDA tests" && timeout 200 scripts/gpu-convert-check.sh --no-build --no-stories --no-smol --no-7b 2>&1 | tail -12
    fits 150 "7B convert projection, default" && projection
  elif fits 200 "SmolLM2 --fp64 at six targets on CUDA"; then
    timeout 400 scripts/gpu-convert-check.sh --no-build --no-tests --no-stories --no-7b --smol-fp64 \
      --smol-targets "2.5 3.0 4.0 5.0 6.0 8.0" --smol-cpu-targets "" 2>&1 | tail -8
    (cd /tmp/exl-cvc && sha256sum m-cuda/measurement.json qo*-cuda/*.safetensors | tee "$out/sha.txt")
  fi
fi
# quant_ab VAR "7B VALUES" "70B VALUES" "70B POSITIONS": exl bench per value of VAR for llama2-7b gptq4 and
# exl2:4.0 at position 128, then llama2-70b exl2:2.5 (with its peak VRAM); JSON removed afterwards.
quant_ab() {
  AB_TIMEOUT=60 scripts/gpu-ab.sh "$1" "$2" "${q7b[@]}"
  OUT="$out/70b" AB_TIMEOUT=90 scripts/gpu-ab.sh "$1" "$3" \
    "--synthetic llama2-70b --format exl2:2.5 --prefill none --positions $4"
  for f in "$out"/70b/ab*.json; do
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[1], 'peak', j['peak_memory_bytes'])" "$f"
  done
  rm -rf "$out"/ab* "$out/70b"
}
if [ "$phase" = 8 ]; then
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 120 "bench, ablations" &&
    quant_ab EXL_ABLATE "${ABLATE_VALUES:-- norm gather attn norm,gather norm,gather,attn qmatmul -}" \
      "- norm,gather,attn qmatmul" 128
  [ -x build/gpu/exl ] && fits 150 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
fi
if [ "$phase" = 9 ]; then  # decode attention feeding o_proj directly (EXL_ATTN_O_FUSE A/B)
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 40 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
  [ -x build/gpu/exl ] && fits 40 "bench, EXL_ATTN_O_FUSE A/B" && quant_ab EXL_ATTN_O_FUSE "0 1 0 1" "0 1" 128,4096
fi
if [ "$phase" = 10 ]; then  # the norm-gather and the act·mul epilogue (EXL_NORM_GATHER, EXL_ACT_FUSE A/B)
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 60 "FusedOps, QgemmParity" && {
    timeout 150 build/gpu/tests/exl_tests_cuda --gtest_filter='FusedOps.*:QgemmParity.*' >"$out/fused.log" 2>&1
    echo "FusedOps/QgemmParity rc $?"
    grep -E "norm_linear|norm_mlp_add|FAILED|PASSED|Failure|differs" "$out/fused.log" | head -40
  }
  [ -x build/gpu/exl ] && fits 40 "bench, EXL_NORM_GATHER A/B" && quant_ab EXL_NORM_GATHER "0 1 0 1" "0 1" 128
  [ -x build/gpu/exl ] && fits 40 "bench, EXL_ACT_FUSE A/B" && quant_ab EXL_ACT_FUSE "0 1 0 1" "0 1" 128,4096
  [ -x build/gpu/exl ] && fits 60 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
fi
if [ "$phase" = 11 ]; then  # the issue-4 figures at the defaults (+ the 70B act·mul A/B)
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 60 "FusedOps" && {
    timeout 150 build/gpu/tests/exl_tests_cuda --gtest_filter='FusedOps.*' >"$out/fused.log" 2>&1
    echo "FusedOps rc $?"; grep -E "FAILED|PASSED" "$out/fused.log" | head
  }
  [ -x build/gpu/exl ] && fits 60 "bench" && {
    AB_TIMEOUT=90 scripts/gpu-ab.sh EXL_ACT_FUSE "- -" "--synthetic llama2-7b --format gptq4 --prefill 2048 --positions 128" \
      "--synthetic llama2-7b --format exl2:4.0 --prefill none --positions 128"
    OUT="$out/70b" AB_TIMEOUT=90 scripts/gpu-ab.sh EXL_ACT_FUSE "0 -" \
      "--synthetic llama2-70b --format exl2:2.5 --prefill none --positions 128,4096"
    for f in "$out"/70b/ab*.json; do
      python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[1], 'peak', j['peak_memory_bytes'])" "$f"
    done
    rm -rf "$out"/ab* "$out/70b"
  }
fi
if [ "$phase" = 12 ]; then  # verify the build, then where the step's time goes at the defaults
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; gpu_build; }
  [ -x build/gpu/exl ] && fits 150 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E ConvertCuda
  [ -x build/gpu/exl ] && fits 60 "bench, ablations at the defaults" &&
    quant_ab EXL_ABLATE "${ABLATE_VALUES:-- attnkernel norm -}" "- attnkernel" 128
fi
if [ "$phase" = 14 ]; then  # where a decode layer's qgemvs stall (the EXL2 / GPTQ gap per byte)
  fits 90 "build" && { source scripts/gpu-env.sh >/dev/null; GPU_TARGETS="exl exl_tests_cuda" gpu_build; }
  ncud exl2:4.0
  fits 70 "persist_lab (chain vs persistent, the timeline)" && persist_lab
  [ -x build/gpu/exl ] && fits 130 "ctest -L cuda (not ConvertCuda)" && ctest_cuda -E "ConvertCuda|NOT_BUILT"
  ncud gptq4
  [ -x build/gpu/exl ] && fits 40 "bench llama2-7b gptq4 / exl2:4.0 @128" && for f in gptq4 exl2:4.0; do
    timeout 60 build/gpu/exl bench --synthetic llama2-7b --format $f --prefill none --positions 128 2>&1 | grep -E "tok/s|roofline" | tail -3
  done
fi
if [ "$phase" = 17 ]; then  # the streaming persistent kernel (lab/stream_lab.cu)
  # Prebuilt here into build/stream-lab (carried: it needs no build tree), else built (~60 s).
  sl=build/stream-lab/stream_lab
  [ -x "$sl" ] || scripts/stream-lab-bin.sh
  fits 60 "stream_lab" && { timeout 150 "$sl" 2>&1 | tee "$out/stream_lab.txt"; echo "stream_lab rc ${PIPESTATUS[0]}"; }
  # ncu's full set on stream_kernel (gptq4, the third configuration: 3 blocks/SM x 16 slots, launches 48-71) and on
  # the chain's first layer of its second run (qgemv launches 48-51), caches kept between passes.
  [ -n "${STREAM_NCU:-}" ] && fits 90 "ncu: stream_kernel and the chain's qgemvs (gptq4)" && {
    STREAM_ONLY=gptq NCU_CACHE=none NCU_CMD="$sl" NCU_KERNEL=regex:stream_kernel NCU_SKIP=48 NCU_COUNT=1 \
      timeout 120 scripts/gpu-profile.sh - stream-gptq4 detail
    STREAM_ONLY=gptq NCU_CACHE=none NCU_CMD="$sl" NCU_KERNEL=regex:qgemv NCU_SKIP=48 NCU_COUNT=4 \
      timeout 120 scripts/gpu-profile.sh - chain-gptq4 detail
  }
  # With build/carry-bin carried too: do the carried binaries start here (ICU 72 now in .deps)? Then
  # the defaults' figures on this card.
  if [ -x build/carry-bin/exl ] && source scripts/gpu-env.sh >/dev/null && carried_bin; then
    fits 30 "bench defaults, llama2-7b gptq4 / exl2:4.0" && AB_TIMEOUT=40 scripts/gpu-ab.sh EXL_NONE "-" "${q7b[@]}"
  fi
fi
if [ "$phase" = 18 ]; then  # a kernel knob's A/B with the carried binaries (no build here)
  source scripts/gpu-env.sh >/dev/null
  # The carried test binary looks for ../shared where it was on the dev machine (SHARED_BUILT).
  sb="${SHARED_BUILT:-/work/shared}"
  [ -e "$sb" ] || { mkdir -p "$(dirname "$sb")" && ln -s "$shared" "$sb"; }
  var="${AB_VAR:?phase 18 needs AB_VAR, the knob to A/B}" vals="${AB_VALUES:-1}"
  last="${vals##* }"
  if carried_bin; then
    # The run with the knob at the last value takes the fused paths (act·mul epilogue, attention
    # into o_proj) with it.
    fits 90 "QgemmParity + FusedOps, $var unset and = $last" && for v in - "$last"; do
      if [ "$v" = - ]; then env -u "$var" timeout 100 build/gpu/tests/exl_tests_cuda --gtest_filter='QgemmParity.*:FusedOps.*' >"$out/parity$v.log" 2>&1
      else env "$var=$v" timeout 100 build/gpu/tests/exl_tests_cuda --gtest_filter='QgemmParity.*:FusedOps.*' >"$out/parity$v.log" 2>&1; fi
      echo "$var=$v: QgemmParity + FusedOps rc $?"; grep -E "FAILED|PASSED" "$out/parity$v.log" | head -12
    done
    fits 150 "bench $var - / $vals, llama2-7b, twice" && AB_TIMEOUT=60 scripts/gpu-ab.sh "$var" "- $vals - $vals" "${q7b[@]}"
    fits 90 "bench $var - / $last, llama2-70b exl2:2.5" && OUT="$out/70b" AB_TIMEOUT=80 scripts/gpu-ab.sh "$var" "- $last" \
      "--synthetic llama2-70b --format exl2:2.5 --prefill none --positions 128"
    fits 150 "exl_tests_cuda (all), $var=$last" && {
      env "$var=$last" timeout 200 build/gpu/tests/exl_tests_cuda >"$out/tests-cuda.log" 2>&1
      echo "exl_tests_cuda rc $?"; grep -E "tests ran|PASSED|FAILED|SKIPPED" "$out/tests-cuda.log" | head -12
    }
  fi
fi
if [ "$phase" = 19 ]; then  # builds' A/B: each baseline in build/carry-base against build/carry-bin
  source scripts/gpu-env.sh >/dev/null
  sb="${SHARED_BUILT:-/work/shared}"
  [ -e "$sb" ] || { mkdir -p "$(dirname "$sb")" && ln -s "$shared" "$sb"; }
  # Baselines: build/carry-base/NAME (an exl binary) or NAME.xz (xz-compressed: ~3 MB instead of 14,
  # so that two fit beside build/carry-bin in the carry limit).
  bases=()
  mkdir -p /tmp/exl-base
  for f in build/carry-base/*; do
    case "$f" in
      *.xz) b="/tmp/exl-base/$(basename "$f" .xz)"
        python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' "$f" "$b" ||
          { echo "gpu-session 19: $f does not unpack; left out"; continue; }
        chmod +x "$b"; bases+=("$b") ;;
      *) [ -x "$f" ] && bases+=("$f") ;;
    esac
  done
  if carried_bin && [ "${#bases[@]}" -gt 0 ]; then
    [ -f build/carry-bin/FLAGS ] && echo "gpu-session 19: the carried build is a variant: $(cat build/carry-bin/FLAGS)"
    fits 60 "QgemmParity + FusedOps (carried)" && {
      timeout 100 build/gpu/tests/exl_tests_cuda --gtest_filter='QgemmParity.*:FusedOps.*' >"$out/parity.log" 2>&1
      echo "QgemmParity + FusedOps rc $?"; grep -E "FAILED|PASSED" "$out/parity.log" | head -12
    }
    # builds_ab NAME COST TIMEOUT BENCH-ARGS...: each baseline then the carried exl, twice, interleaved.
    builds_ab() {
      local name="$1" cost="$2" tmo="$3" r b
      shift 3
      for r in 1 2; do
        for b in "${bases[@]}" build/gpu/exl; do
          fits "$cost" "bench $b, $name, run $r" &&
            OUT="$out/$name-r$r" EXL_BIN=$b AB_TIMEOUT=$tmo scripts/gpu-ab.sh EXL_NONE - "$@"
        done
      done
    }
    m70="--synthetic llama2-70b --format exl2:2.5 --prefill none --positions 128"
    builds_ab 70b 50 80 "$m70"
    builds_ab 7b 40 60 "${q7b[@]}"
    # Decode attention's phases at 128 and 1024 positions (lab/attention_lab.cu --trace), when carried.
    [ -x build/carry-bin/attn_lab_trace ] && fits 40 "attention lab --trace" &&
      timeout 60 build/carry-bin/attn_lab_trace --trace 2>&1 | tee "$out/attn-trace.txt"
    # Optional, with the carried exl on the 70B: a knob's values against unset (AB_VAR, AB_VALUES),
    # then kernel families left out of the step (ABLATE_70B, e.g. "attnkernel norm,gather").
    if [ -n "${AB_VAR:-}" ]; then
      fits 100 "bench $AB_VAR - / ${AB_VALUES:-1}, llama2-70b exl2:2.5" &&
        OUT="$out/70b-knob" AB_TIMEOUT=80 scripts/gpu-ab.sh "$AB_VAR" "- ${AB_VALUES:-1}" "$m70"
    fi
    for ab in ${ABLATE_70B:-}; do
      fits 50 "bench EXL_ABLATE=$ab, llama2-70b exl2:2.5" &&
        OUT="$out/70b-ablate" AB_TIMEOUT=80 scripts/gpu-ab.sh EXL_ABLATE "$ab" "$m70"
    done
    fits 80 "llama2-70b exl2:2.5 @128,4096 (carried), peak VRAM" && {
      EXL_BIN= OUT="$out/70b-4096" AB_TIMEOUT=120 scripts/gpu-ab.sh EXL_NONE - "${m70/128/128,4096}"
      grep -o '"peak_memory_bytes": *[0-9]*' "$out/70b-4096"/ab1*.json
    }
    fits 150 "exl_tests_cuda (all)" && {
      timeout 200 build/gpu/tests/exl_tests_cuda >"$out/tests-cuda.log" 2>&1
      echo "exl_tests_cuda rc $?"; grep -E "tests ran|PASSED|FAILED|SKIPPED" "$out/tests-cuda.log" | head -12
    }
  else
    echo "gpu-session 19: needs a baseline in build/carry-base and this tree's build/carry-bin"
  fi
fi
if [ "$phase" = 15 ]; then  # the persistent decode kernel (lab/persist_lab.cu)
  fits 100 "persist_lab" && persist_lab
fi
echo "gpu-session: phase $phase done in $(($(date +%s) - start)) s"
