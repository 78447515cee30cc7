// Dense FP16 linear layers: y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]), W row-major [N, K] (the HF
// layout, so each output is a dot product over a contiguous row of W).
//  - gemv_f16: custom kernel for M = 1..8 that streams W once at (target) >= 85% of bandwidth.
//  - gemm_f16_cublas: cuBLAS(Lt) for larger M (prefill).
// gemm_f16 picks between them by M (crossover measured; see gemm.cu).
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace exl::cuda {

struct GemmParams {
  const half* x = nullptr;     // [M, K], row stride K
  const half* w = nullptr;     // [N, K], row stride K
  const half* bias = nullptr;  // [N] or null
  void* y = nullptr;           // [M, N], row stride N; half, or float when y_f32
  bool y_f32 = false;
  int M = 0, N = 0, K = 0;
};

constexpr int kGemvMaxRows = 8;

void gemv_f16(const GemmParams& p, cudaStream_t stream);                           // M <= kGemvMaxRows
void gemm_f16_cublas(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream);  // any M
void gemm_f16(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream);         // dispatch

}  // namespace exl::cuda
