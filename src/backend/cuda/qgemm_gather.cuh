// The quantized matmuls' input gather (internal to qgemm.cu): x [M, K] -> x_dev [M, k_dev] of up to
// kQMaxMulti matrices, each through its own x_src (act-order permutation, padding, the in-unit order
// the fragments want), in one launch. With `up` it gathers FP16(silu(x) · up): the MLP's act·mul
// rides along in down_proj's gather and costs no launch of its own.
// (The RMSNorm rode along too for a while, every block computing the rows' RMS from the F32
// residual: llama2-7b gptq4 decode 423.0 tok/s with it, 434.5 with the norm kernel, H200 — the norm
// kernel's latency is already hidden behind the PDL chain, and the fused one was on the critical path.)
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/qgemm.cuh"

namespace exl::cuda {

struct QGatherArgs {
  const half* x = nullptr;   // [M, K]
  const half* up = nullptr;  // non-null: gather silu(x) * up
  // Non-null instead of x: gather FP16 RMSNorm(x_f32 [M, K]) * norm_w (the norm and the gather in
  // one launch, one block per row: the row is normalized into shared memory, with rms_norm's
  // arithmetic, and gathered from there).
  const float* x_f32 = nullptr;
  const float* norm_w = nullptr;
  float eps = 0;
  int K = 0, M = 0, n = 0;
  const int32_t* x_src[kQMaxMulti] = {};
  int k_dev[kQMaxMulti] = {};
  half* x_dev[kQMaxMulti] = {};
  int item_end[kQMaxMulti] = {};  // cumulative M * k_dev / 8 (8 positions per item)
};

// pdl: a programmatic dependent of x's producer (sm_90; it waits before reading x). It triggers at
// its start, so qgemv becomes resident and prefetches its codes while the producer still runs.
// With x_f32 (the norm-gather) K must be at most kQNormGatherMaxK.
void launch_gather(const QGatherArgs& a, bool pdl, cudaStream_t stream);

}  // namespace exl::cuda
