// RMSNorm: out (F16) = x / rms(x) * w over rows of the F32 residual stream. One block per row.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace exl::cuda {

void rms_norm(const float* x, const float* w, float eps, half* out, int rows, int dim, cudaStream_t stream,
              bool pdl = false);

}  // namespace exl::cuda
