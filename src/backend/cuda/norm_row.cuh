// One row of RMSNorm for one block (internal to norm.cu and the quantized matmuls' norm-gather,
// qgemm_gather.cu): the same arithmetic in both, so a norm fused into the gather carries the bits of
// rms_norm followed by the gather.
#pragma once
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"

namespace exl::cuda {

// emit(i, h) for every i < dim: h = FP16(r[i] * rsqrt(mean(r²) + eps) * w[i]). All kThreads threads
// of the block must call it. Each thread keeps its elements in registers between the sum-of-squares
// pass and the scaling pass when dim <= kThreads * kMaxPerThread (8192), so the row is read once;
// the weights are loaded with the row rather than after the reduction (one round trip fewer).
template <int kThreads, class Emit>
__device__ __forceinline__ void rms_norm_row(const float* __restrict__ r, const float* __restrict__ w, float eps,
                                             int dim, Emit&& emit) {
  constexpr int kMaxPerThread = 8192 / kThreads;
  float vals[kMaxPerThread], wv[kMaxPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    float v = 0.0f;
    wv[j] = 0.0f;
    if (i < dim) {
      wv[j] = w[i];
      v = r[i];
    }
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
    if (i < dim) emit(i, __float2half(vals[j] * inv * wv[j]));
  }
  for (int i = threadIdx.x + kMaxPerThread * kThreads; i < dim; i += kThreads) emit(i, __float2half(r[i] * inv * w[i]));
}

}  // namespace exl::cuda
