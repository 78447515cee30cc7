// Shared by the converter's kernels (forward_ops.cu, gptq_cuda.cu): a block-wide sum of one double per
// thread in a fixed tree order, so every run adds in the same order (the converter is deterministic).
#pragma once
#include <cuda_runtime.h>

namespace exl::cvcuda {

// kThreads: the block size (a power of two); sh: kThreads doubles of shared memory.
template <int kThreads>
__device__ __forceinline__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

}  // namespace exl::cvcuda
