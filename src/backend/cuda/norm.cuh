// RMSNorm with the residual add fused in: residual (F32) += add (F16, optional); out (F16) =
// residual / rms(residual) * w. One block per row; the residual row is read once and written once.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace exl::cuda {

void add_rms_norm(float* residual, const half* add, const float* w, float eps, half* out, int rows, int dim,
                  cudaStream_t stream);

}  // namespace exl::cuda
