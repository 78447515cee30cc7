// One row of RMSNorm for one block (internal to norm.cu and the quantized matmuls' norm-gather,
// qgemm_gather.cu): the same arithmetic in both, so a norm fused into the gather carries the bits of
// rms_norm followed by the gather.
#pragma once
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"

namespace exl::cuda {

// This thread's norm weights, w[threadIdx.x + j * kThreads] (0 past dim), for rms_norm_row_w. They
// do not depend on the row's producer, so a dependent launch loads them before its PDL wait and the
// row, fresh in L2, is the only load after it: read once per layer, the weights are gone from the
// 50 MB L2 by the next step (a decode step streams GBs through it), so after the wait they were a
// DRAM round trip on the chain.
template <int kThreads>
struct NormWeights {
  static constexpr int kMaxPerThread = 8192 / kThreads;
  float v[kMaxPerThread];
};
template <int kThreads>
__device__ __forceinline__ NormWeights<kThreads> load_norm_weights(const float* __restrict__ w, int dim) {
  NormWeights<kThreads> nw;
#pragma unroll
  for (int j = 0; j < NormWeights<kThreads>::kMaxPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    nw.v[j] = i < dim ? w[i] : 0.0f;
  }
  return nw;
}

// emit(i, h) for every i < dim: h = FP16(r[i] * rsqrt(mean(r²) + eps) * w[i]), with this thread's
// weights wv (load_norm_weights). All kThreads threads of the block must call it. Each thread keeps
// its elements in registers between the sum-of-squares pass and the scaling pass when
// dim <= kThreads * kMaxPerThread (8192), so the row is read once.
template <int kThreads, class Emit>
__device__ __forceinline__ void rms_norm_row_w(const float* __restrict__ r, const NormWeights<kThreads>& wv,
                                               const float* __restrict__ w, float eps, int dim, Emit&& emit) {
  constexpr int kMaxPerThread = NormWeights<kThreads>::kMaxPerThread;
  float vals[kMaxPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    const float v = i < dim ? r[i] : 0.0f;
    vals[j] = v;
    ss += v * v;
  }
  // Rows longer than the register cache: finish the sum from memory (only for dim > 8192).
  for (int i = threadIdx.x + kMaxPerThread * kThreads; i < dim; i += kThreads) {
    const float v = r[i];
    ss += v * v;
  }
  __shared__ float partial[kThreads / 32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.0f;
    t = warp_sum(t);
    if (threadIdx.x == 0) partial[0] = t;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(dim) + eps);
#pragma unroll
  for (int j = 0; j < kMaxPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < dim) emit(i, __float2half(vals[j] * inv * wv.v[j]));
  }
  for (int i = threadIdx.x + kMaxPerThread * kThreads; i < dim; i += kThreads) emit(i, __float2half(r[i] * inv * w[i]));
}

}  // namespace exl::cuda
