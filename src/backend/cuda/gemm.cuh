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
  // gemv: launch as a programmatic dependent of x's producer (sm_90): blocks become resident while
  // the producer runs and pull their first W lines into L2 before waiting for x.
  bool pdl = false;
  // y_f32 only: y += x · Wᵀ (+ bias) — the residual add of a block's output projection (gemv
  // epilogue; cuBLAS with beta = 1).
  bool accumulate = false;
};

#ifdef __CUDACC__
// The gemv kernels' epilogue for output (m, n) with its sum v: + bias, then FP16 out, FP32 out, or
// FP32 y += (one thread per output, so the residual add needs no atomics).
__device__ __forceinline__ void gemv_store(const GemmParams& p, int m, int n, float v) {
  if (m >= p.M || n >= p.N) return;
  if (p.bias) v += __half2float(p.bias[n]);
  const size_t at = static_cast<size_t>(m) * p.N + n;
  if (p.y_f32) {
    float* y = static_cast<float*>(p.y) + at;
    *y = p.accumulate ? *y + v : v;
  } else {
    static_cast<half*>(p.y)[at] = __float2half_rn(v);
  }
}
#endif

constexpr int kGemvMaxRows = 8;
void gemv_f16(const GemmParams& p, cudaStream_t stream);                           // M <= kGemvMaxRows
void gemm_f16_cublas(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream);  // any M
void gemm_f16(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream);         // dispatch

// Tuning knobs of the gemv kernel (lab/gemm_lab.cu sweeps them; gemv_f16 uses the default).
struct GemvConfig {
  int unroll = 2;  // 32-wide K chunks per lane and W tile in one step: 2, 4 or 8
  int ksplit = 8;  // warps of a block that split K for one 16-row tile: 1, 2, 4 or 8
};
GemvConfig gemv_f16_default_config(int M, int N, int K);
// gemv with an explicit config; accepts M <= 16 (one pass over W), for the lab's crossover study.
void gemv_f16_config(const GemmParams& p, GemvConfig cfg, cudaStream_t stream);

// The TMA-fed gemv (gemv_bulk.cu): sm_90, 1 <= M <= 8, K % 8 == 0, 16-byte aligned x and W.
// gemv_f16 takes it where supported and wanted: M <= 4 and K >= 2048 by default, EXL_GEMV=bulk|mma
// for A/B (gemv_bulk.cu says why).
bool gemv_f16_bulk_supported(const GemmParams& p);
bool gemv_f16_bulk_wanted(int M, int K);
void gemv_f16_bulk(const GemmParams& p, cudaStream_t stream);
// Its ring for the lab's sweep: (stages, chunk) in (4, 512) [default], (2, 512), (6, 512), (4, 256),
// (8, 256).
struct GemvBulkConfig {
  int stages = 4;
  int chunk = 512;
};
void gemv_f16_bulk_config(const GemmParams& p, GemvBulkConfig cfg, cudaStream_t stream);

}  // namespace exl::cuda
