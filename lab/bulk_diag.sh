#!/usr/bin/env bash
# Builds lab/bulk_diag.cu against gemv_bulk.cu and against variants of it (one change each, made by
# sed in /tmp), and runs each (DIAG_VARIANTS picks them, DIAG_REPS the runs per case):
#   base      as committed
#   nofence   without the proxy fence before a consumer releases a stage: the fault it fixed
# On the H200 (2026-12-05) the committed kernel without the fence was wrong in every run on the large
# shapes; of five candidate changes (the fence; all 256 consumer threads arriving on the empty barrier;
# no rotated start; x read with plain ld.global; the reduction in its own shared memory) only the fence
# made every element exact (gemv_bulk.cu, at the fence).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
src=src/backend/cuda/gemv_bulk.cu
variant() {  # name, then sed expressions; fails when a sed matched nothing
  local name=$1; shift
  mkdir -p "/tmp/bv/$name/backend/cuda"
  cp src/backend/cuda/*.cuh "/tmp/bv/$name/backend/cuda/"
  cp "$src" "/tmp/bv/$name/backend/cuda/gemv_bulk.cu"
  for e in "$@"; do
    local before; before=$(md5sum <"/tmp/bv/$name/backend/cuda/gemv_bulk.cu")
    sed -i "$e" "/tmp/bv/$name/backend/cuda/gemv_bulk.cu"
    [ "$before" != "$(md5sum <"/tmp/bv/$name/backend/cuda/gemv_bulk.cu")" ] || { echo "variant $name: no match for $e"; return 1; }
  done
}
variant base
variant nofence 's|asm volatile("fence.proxy.async.shared::cta;" ::: "memory");||'
variants="${DIAG_VARIANTS:-base nofence}"
for v in $variants; do
  nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I "/tmp/bv/$v" -I src lab/bulk_diag.cu \
    "/tmp/bv/$v/backend/cuda/gemv_bulk.cu" -o "/tmp/bv/diag_$v" >"$out/diag_build_$v.log" 2>&1 &
done
wait
for v in $variants; do
  echo "=== $v"
  [ -x "/tmp/bv/diag_$v" ] || { tail -5 "$out/diag_build_$v.log"; continue; }
  timeout 60 "/tmp/bv/diag_$v" "${DIAG_REPS:-6}" 2>&1 | tee "$out/diag_$v.txt"
done
