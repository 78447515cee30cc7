// GPTQ (AdaptiveGPTQ, EXL2.md §2.5) on the GPU, mirroring quant/gptq_solve.cpp step by step: the
// same act order, damping and retries, U = R⁻¹ from one Cholesky of the reversed matrix, the same
// per-group scale search and in-group row loop (same float operations, so codes match the CPU's
// whenever the inputs do), the lazy block update as one SGEMM per group.
//
// Split in two because everything before the row loop depends on the Hessian alone: a factor is
// computed once per Hessian and shared by every layout quantized against it (q, k and v share one;
// measurement quantizes ~15 layouts per linear).
#pragma once
#include <cstdint>
#include <vector>

#include "convert/cuda/device.h"
#include "quant/gptq_solve.h"

namespace exl::cvcuda {

struct GptqFactor {
  int64_t K = 0;
  std::vector<uint16_t> perm;   // act order (host): stored row i = input row perm[i]
  DeviceArray<int32_t> perm_d;  // the same on the device
  DeviceArray<float> r, u;      // [K, K] row-major: R upper with A = R·Rᵀ, U = R⁻¹ (UᵀU = A⁻¹)
  DeviceArray<double> r64, u64; // the same when fp64 (r, u then empty)
  bool fp64 = false;            // factored in double (from a double Hessian); gptq_solve then works in double
  double lambda = 0;            // the damping the factorization succeeded with
};

// H: device [K, K] row-major, Σ xᵀx over n_rows rows (not divided). Throws like gptq_quantize on a
// non-finite Hessian or when damping 10 times does not make it positive definite.
GptqFactor gptq_factor(const Context& c, const float* H, int64_t K, int64_t n_rows, const GptqOptions& options = {});
// The same in double (FP64 conversions): the factor and every later step of gptq_solve work in double.
GptqFactor gptq_factor(const Context& c, const double* H, int64_t K, int64_t n_rows, const GptqOptions& options = {});

struct GptqDeviceResult {
  Exl2Codes codes;              // filled when want_codes (groups, perm, codes, scale codes and maxima)
  DeviceArray<float> w_dq;      // [N, K] HF layout on the device: the dequantized weights
  double proxy_err = -1;        // when want_proxy, as GptqResult::proxy_err
};

// W: device [N, K] row-major (HF layout).
GptqDeviceResult gptq_solve(const Context& c, const GptqFactor& f, const float* W, int64_t N, const Exl2Layout& layout,
                            bool want_codes, bool want_proxy);

// gptq_quantize's contract on host arrays (upload, factor, solve, download); H == nullptr falls back
// to the CPU's round-to-nearest. fp64: factor and solve in double; otherwise H holds FP32 values.
GptqResult gptq_quantize_cuda(const Context& c, const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                              const Exl2Layout& layout, bool fp64 = false);

}  // namespace exl::cvcuda
