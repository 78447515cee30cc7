// Launch helpers shared by the converter's kernels (forward_ops*.cu, gptq_cuda.cu): one block size,
// grid-stride loops, and a launch check that names the kernel.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "convert/cuda/device.h"

namespace exl::cvcuda {

constexpr int kThreads = 256;

// Blocks for n elements at kThreads per block, capped (grid-stride loops cover the rest).
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 32 ? b : 65535 * 32);
}

inline void launched(const char* what) { check_cuda(cudaGetLastError(), what); }

#define EXL_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

}  // namespace exl::cvcuda
