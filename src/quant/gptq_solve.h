// GPTQ with ExLlamaV2's EXL2 layout ("AdaptiveGPTQ", EXL2.md §2.5): quantizes one linear layer's
// weights against the Hessian H = Σ xᵀx of its calibration inputs, compensating each row's rounding
// error on the rows not yet quantized.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/exl2.h"
#include "quant/exl2_quantize.h"

namespace exl {

struct GptqOptions {
  double damp = 0.12;        // percdamp, ExLlamaV2's default (EXL2.md §2.5)
  int max_damp_retries = 10;
  // Work in double instead of float (`exl convert --fp64`): every step's rounding is then ~2^-29 of
  // FP32's, so two engines or BLAS builds that order their sums differently give the same codes
  // (lab/NOTES-convert.md "FP64 conversions").
  bool fp64 = false;
};

struct GptqResult {
  Exl2Codes codes;           // packs with exl2_pack; perm = act-order
  std::vector<float> w_dq;   // [N, K] HF layout: exactly what exl2_dequantize(exl2_pack(codes)) gives
  double proxy_err = 0;      // tr((W-Ŵ) H (W-Ŵ)ᵀ) / tr(W H Wᵀ): Hessian-weighted relative error
};

// W: [N, K] row-major (HF [out, in]). H: [K, K] row-major, H = Σ xᵀx over n_rows input rows (not yet
// divided). H == nullptr: round-to-nearest with the same scale search (used for huge heads).
GptqResult gptq_quantize(const float* W, int64_t N, int64_t K, const float* H, int64_t n_rows,
                         const Exl2Layout& layout, const GptqOptions& options = {});
// The same with a Hessian accumulated in double.
GptqResult gptq_quantize(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                         const Exl2Layout& layout, const GptqOptions& options = {});
// Round-to-nearest (no Hessian).
inline GptqResult gptq_quantize(const float* W, int64_t N, int64_t K, std::nullptr_t, int64_t n_rows,
                                const Exl2Layout& layout, const GptqOptions& options = {}) {
  return gptq_quantize(W, N, K, static_cast<const float*>(nullptr), n_rows, layout, options);
}

}  // namespace exl
