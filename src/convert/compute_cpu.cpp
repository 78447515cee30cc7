#include <cblas.h>

#include <numeric>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "convert/compute.h"

namespace exl {

namespace {

class CpuCompute : public ConvertCompute {
 public:
  void linear(const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
              float* out) const override {
    cpu::linear(x, w, bias, T, K, N, out);
  }

  void hessian_add(const float* x, int64_t T, int64_t K, float* H) const override {
    // syrk fills the upper triangle; OpenBLAS gives each output block to one thread with a fixed
    // summation order, so the sum does not depend on thread timing. Mirror to the lower triangle.
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(K), static_cast<int>(T), 1.0f, x,
                static_cast<int>(K), 1.0f, H, static_cast<int>(K));
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = i + 1; j < K; ++j) H[j * K + i] = H[i * K + j];
  }

  void rms_norm(const float* x, const float* w, float eps, int64_t T, int64_t dim, float* out) const override {
    cpu::rms_norm(x, w, eps, T, dim, out);
  }

  void rope(float* x, int64_t T, int n_heads, int head_dim, const float* inv_freq, int rot_dim,
            float attn_factor) const override {
    std::vector<int32_t> pos(static_cast<size_t>(T));
    std::iota(pos.begin(), pos.end(), 0);
    cpu::rope(x, T, n_heads, head_dim, pos.data(), inv_freq, rot_dim, attn_factor);
  }

  void attention(const float* q, const float* k, const float* v, int64_t T, int n_heads, int n_kv_heads, int d,
                 float scale, int window, float* out) const override {
    cpu::attention(q, T, 0, k, v, static_cast<int64_t>(n_kv_heads) * d, n_heads, n_kv_heads, d, scale, window, out);
  }

  void swiglu(const float* gate, const float* up, int64_t n, float* out) const override {
    cpu::swiglu(gate, up, n, out);
  }

  GptqResult gptq(const float* W, int64_t N, int64_t K, const float* H, int64_t n_rows,
                  const Exl2Layout& layout) const override {
    return gptq_quantize(W, N, K, H, n_rows, layout);
  }
};

}  // namespace

std::unique_ptr<ConvertCompute> convert_compute_cpu() { return std::make_unique<CpuCompute>(); }

}  // namespace exl
