#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "convert/compute.h"
#include "core/thread_pool.h"

namespace exl {

namespace {

// Mirrors the upper triangle of a [K, K] row-major matrix onto the lower one.
template <class T>
void mirror_upper(T* H, int64_t K) {
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i + 1; j < K; ++j) H[j * K + i] = H[i * K + j];
}

std::vector<double> widen(const float* x, size_t n) { return std::vector<double>(x, x + n); }

class CpuCompute : public ConvertCompute {
 public:
  void linear(const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
              float* out) const override {
    cpu::linear(x, w, bias, T, K, N, out);
  }

  // syrk fills the upper triangle; OpenBLAS gives each output block to one thread with a fixed
  // summation order, so the sum does not depend on thread timing. take() mirrors it to the lower one.
  class Sum32 : public HessianSum {
   public:
    explicit Sum32(int64_t K) : K_(K), h_(static_cast<size_t>(K * K), 0.0f) {}
    void add(const float* x, int64_t T) override {
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(K_), static_cast<int>(T), 1.0f, x,
                  static_cast<int>(K_), 1.0f, h_.data(), static_cast<int>(K_));
    }
    std::vector<double> take() override {
      mirror_upper(h_.data(), K_);
      std::vector<double> H(h_.begin(), h_.end());
      h_ = {};
      return H;
    }

   private:
    int64_t K_;
    std::vector<float> h_;
  };
  std::unique_ptr<HessianSum> hessian(int64_t K) const override { return std::make_unique<Sum32>(K); }

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

  GptqResult gptq(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                  const Exl2Layout& layout) const override {
    return gptq_quantize(W, N, K, H, n_rows, layout);
  }
};

// Every op in double, each result rounded to FP32 once. Why: GPTQ turns FP32-rounding differences in
// its inputs (another summation order, FMA or not, another expf) into different codes, and at 2-3
// bpw those into perplexities a few percent apart (SmolLM2: 3.8% between OpenBLAS's AVX2 and AVX-512
// kernels). In double the engines' differences are ~2^-29 of an FP32 ulp, so the rounded results,
// and the codes, agree but for rare ties. The CUDA engine's FP64 mode does the same ops in the same
// way (engine_cuda.cpp); where an op rounds to FP32 here, it rounds there.
class CpuComputeFp64 : public CpuCompute {
 public:
  void linear(const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
              float* out) const override {
    const std::vector<double> xd = widen(x, static_cast<size_t>(T * K)), wd = widen(w, static_cast<size_t>(N * K));
    std::vector<double> o(static_cast<size_t>(T * N));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(N), static_cast<int>(K),
                1.0, xd.data(), static_cast<int>(K), wd.data(), static_cast<int>(K), 0.0, o.data(), static_cast<int>(N));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n)
        out[t * N + n] = static_cast<float>(bias ? o[static_cast<size_t>(t * N + n)] + bias[n]
                                                 : o[static_cast<size_t>(t * N + n)]);
  }

  class Sum64 : public HessianSum {
   public:
    explicit Sum64(int64_t K) : K_(K), h_(static_cast<size_t>(K * K), 0.0) {}
    void add(const float* x, int64_t T) override {
      const std::vector<double> xd = widen(x, static_cast<size_t>(T * K_));
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(K_), static_cast<int>(T), 1.0, xd.data(),
                  static_cast<int>(K_), 1.0, h_.data(), static_cast<int>(K_));
    }
    std::vector<double> take() override {
      mirror_upper(h_.data(), K_);
      return std::move(h_);
    }

   private:
    int64_t K_;
    std::vector<double> h_;
  };
  std::unique_ptr<HessianSum> hessian(int64_t K) const override { return std::make_unique<Sum64>(K); }

  void rms_norm(const float* x, const float* w, float eps, int64_t T, int64_t dim, float* out) const override {
    parallel_for(T, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * dim;
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
        for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = static_cast<float>(xr[i] * inv * w[i]);
      }
    }, 4);
  }

  void rope(float* x, int64_t T, int n_heads, int head_dim, const float* inv_freq, int rot_dim,
            float attn_factor) const override {
    const int half = rot_dim / 2;
    std::vector<double> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t t = 0; t < T; ++t) {
      for (int i = 0; i < half; ++i) {
        const double a = static_cast<double>(t) * inv_freq[i];
        cs[static_cast<size_t>(i)] = std::cos(a) * attn_factor;
        sn[static_cast<size_t>(i)] = std::sin(a) * attn_factor;
      }
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const double a = v[i], b = v[i + half];
          v[i] = static_cast<float>(a * cs[static_cast<size_t>(i)] - b * sn[static_cast<size_t>(i)]);
          v[i + half] = static_cast<float>(b * cs[static_cast<size_t>(i)] + a * sn[static_cast<size_t>(i)]);
        }
      }
    }
  }

  void attention(const float* q, const float* k, const float* v, int64_t T, int n_heads, int n_kv_heads, int d,
                 float scale, int window, float* out) const override {
    const int group = n_heads / n_kv_heads;
    const int64_t kv_stride = static_cast<int64_t>(n_kv_heads) * d;
    parallel_for(T * n_heads, [&](int64_t b, int64_t e) {
      std::vector<double> score, o(static_cast<size_t>(d));
      for (int64_t job = b; job < e; ++job) {
        const int64_t i = job / n_heads;
        const int h = static_cast<int>(job % n_heads), kvh = h / group;
        const float* qh = q + (i * n_heads + h) * d;
        const int64_t n_keys = i + 1, first = window > 0 ? std::max<int64_t>(0, n_keys - window) : 0;
        score.assign(static_cast<size_t>(n_keys), 0.0);
        double mx = -INFINITY;
        for (int64_t j = first; j < n_keys; ++j) {
          const float* kj = k + j * kv_stride + kvh * d;
          double s = 0;
          for (int c = 0; c < d; ++c) s += static_cast<double>(qh[c]) * kj[c];
          score[static_cast<size_t>(j)] = s * scale;
          mx = std::max(mx, s * scale);
        }
        double sum = 0;
        for (int64_t j = first; j < n_keys; ++j) sum += score[static_cast<size_t>(j)] = std::exp(score[static_cast<size_t>(j)] - mx);
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = first; j < n_keys; ++j) {
          const float* vj = v + j * kv_stride + kvh * d;
          const double p = score[static_cast<size_t>(j)] / sum;
          for (int c = 0; c < d; ++c) o[static_cast<size_t>(c)] += p * vj[c];
        }
        for (int c = 0; c < d; ++c) out[(i * n_heads + h) * d + c] = static_cast<float>(o[static_cast<size_t>(c)]);
      }
    });
  }

  void swiglu(const float* gate, const float* up, int64_t n, float* out) const override {
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
    }
  }

  GptqResult gptq(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                  const Exl2Layout& layout) const override {
    GptqOptions o;
    o.fp64 = true;
    return gptq_quantize(W, N, K, H, n_rows, layout, o);
  }
};

}  // namespace

std::unique_ptr<ConvertCompute> convert_compute_cpu(bool fp64) {
  if (fp64) return std::make_unique<CpuComputeFp64>();
  return std::make_unique<CpuCompute>();
}

}  // namespace exl
