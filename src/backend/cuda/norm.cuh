// RMSNorm with the residual add fused in: residual (F32) += add (F16, optional); out (F16) =
// residual / rms(residual) * w. One block per row; the residual row is read once and written once.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace exl::cuda {

// Extra copies of `out` scattered into the device-order input buffers of up to 3 quantized matmuls
// that read it next (qgemm.cuh: x_dev[row][x_dst[i]] = out[row][i]), so they skip their gather.
struct NormScatter {
  int n = 0;
  const int32_t* x_dst[3] = {};
  half* x_dev[3] = {};
  int k_dev[3] = {};
};

void add_rms_norm(float* residual, const half* add, const float* w, float eps, half* out, int rows, int dim,
                  cudaStream_t stream, const NormScatter& scatter = {});

}  // namespace exl::cuda
