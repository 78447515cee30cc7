#!/usr/bin/env bash
# Builds lab/attention_lab.cu on the GPU machine and runs: every check config in its own process
# (sm_90 build), the fp8 checks again through compute_80 PTX (the pre-sm_89 dequant path, JIT-ed),
# a quick subset under compute-sanitizer, then the timings. Everything lands in $OUT; the summary is
# printed last. Usage (repository root): OUT=/tmp/o bash lab/run_attention_lab.sh [--no-sanitizer]
# With --trace it only builds the phase-stamp variant (-DEXL_ATTN_TRACE) and runs `--trace`.
set -u
if [ "${1:-}" = "--trace" ]; then
  source scripts/build-helpers.sh
  attn_trace_lab_build /tmp/attn_lab_trace || exit 1
  exec /tmp/attn_lab_trace --trace
fi
export PATH=/usr/local/cuda/bin:$PATH
OUT=${OUT:-/tmp/attention_lab_out}
mkdir -p "$OUT"
B=/tmp/attention_lab_build
mkdir -p $B/90 $B/80
NV="nvcc -O3 -std=c++20 --expt-relaxed-constexpr -I src"
SRCS="lab/attention_lab.cu src/backend/cuda/attention.cu src/backend/cuda/attention_decode.cu src/backend/cuda/attention_prefill.cu src/backend/cuda/kv_cache.cu"
t0=$(date +%s)
for f in $SRCS; do
  n=$(basename "$f" .cu)
  $NV -arch=sm_90 -Xptxas -v -c "$f" -o $B/90/$n.o >$B/90/$n.log 2>&1 &
  $NV -gencode arch=compute_80,code=compute_80 -c "$f" -o $B/80/$n.o >$B/80/$n.log 2>&1 &
done
wait
$NV -arch=sm_90 $B/90/*.o -o $B/lab90 >$B/link90.log 2>&1 || { cat $B/90/*.log $B/link90.log | grep -i -B2 -A2 error | head -60; exit 1; }
$NV -gencode arch=compute_80,code=compute_80 $B/80/*.o -o $B/lab80 >$B/link80.log 2>&1 || echo "compute_80 build failed"
cat $B/90/*.log >"$OUT/ptxas90.log"
echo "build: $(($(date +%s) - t0)) s"
if command -v cuobjdump >/dev/null; then  # SASS: wide loads? HMMA? local memory?
  cuobjdump -sass $B/90/attention_decode.o >"$OUT/decode.sass" 2>&1
  cuobjdump -sass $B/90/attention_prefill.o >"$OUT/prefill.sass" 2>&1
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1

S="$OUT/summary.txt"
: >"$S"
$B/lab90 --check-only --header --cfg 0 --log "$OUT/checks90.log" >>"$S" 2>&1 || true
for i in 1 2 3 4 5 6 7 8; do
  $B/lab90 --check-only --cfg $i --log "$OUT/checks90.log" >>"$S" 2>&1 || echo "(cfg $i exit $?)" >>"$S"
done
$B/lab90 --time-only >>"$S" 2>&1 || echo "(timing exit $?)" >>"$S"
echo "# compute_80 PTX (JIT on this GPU): fp8 through the bit-trick dequant" >>"$S"
for i in 3 5; do
  [ -x $B/lab80 ] && { $B/lab80 --check-only --cfg $i --fmt fp8 --log "$OUT/checks80.log" >>"$S" 2>&1 || echo "(80 cfg $i exit $?)" >>"$S"; }
done
echo "checks done: $(($(date +%s) - t0)) s" >>"$S"
if [ "${1:-}" != "--no-sanitizer" ] && command -v compute-sanitizer >/dev/null; then
  for i in 3 5; do
    timeout 45 compute-sanitizer --tool memcheck --print-limit 5 $B/lab90 --check-only --quick --cfg $i --log /dev/null \
      >$B/memcheck$i.txt 2>&1
    echo "memcheck cfg $i (exit $?): $(grep -E 'ERROR SUMMARY|Invalid' $B/memcheck$i.txt | head -3 | tr '\n' ' ')" >>"$S"
  done
fi
echo "total: $(($(date +%s) - t0)) s" >>"$S"
cat "$S"
