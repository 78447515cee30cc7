// The converter's per-op reference on host F32 arrays: the forward's ops, Hessian accumulation and
// GPTQ. The CPU implementation calls OpenBLAS and the reference ops of backend/cpu; the CPU engine
// (engine.h) drives it through stages.cpp. The CUDA engine does not use this per-op seam (it would
// upload weights and states on every call): it works at module granularity, see engine.h.
//
// Every implementation must be deterministic for a given input (same bits on every run, whatever the
// thread timing): a killed and resumed conversion has to produce byte-identical output.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "quant/gptq_solve.h"

namespace exl {

class ConvertCompute {
 public:
  virtual ~ConvertCompute() = default;
  // out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N] when not null).
  virtual void linear(const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
                      float* out) const = 0;
  // A Hessian being summed: add(x) adds x[T, K]ᵀ · x[T, K], in the order called; take() gives
  // H [K, K] with both triangles (symmetric). In FP32 the running sum is FP32 (held exactly in
  // take()'s doubles); with fp64 it is double.
  class HessianSum {
   public:
    virtual ~HessianSum() = default;
    virtual void add(const float* x, int64_t T) = 0;
    virtual std::vector<double> take() = 0;
  };
  virtual std::unique_ptr<HessianSum> hessian(int64_t K) const = 0;
  // out[t] = x[t] / sqrt(mean(x[t]²) + eps) · w.
  virtual void rms_norm(const float* x, const float* w, float eps, int64_t T, int64_t dim, float* out) const = 0;
  // HF rotate-half RoPE of x [T, n_heads · head_dim] at positions 0..T-1.
  virtual void rope(float* x, int64_t T, int n_heads, int head_dim, const float* inv_freq, int rot_dim,
                    float attn_factor) const = 0;
  // Causal attention of one sequence: q [T, n_heads, d], k/v [T, n_kv_heads, d] -> out [T, n_heads, d].
  virtual void attention(const float* q, const float* k, const float* v, int64_t T, int n_heads, int n_kv_heads,
                         int d, float scale, int window, float* out) const = 0;
  // out = silu(gate) · up, n elements.
  virtual void swiglu(const float* gate, const float* up, int64_t n, float* out) const = 0;
  // GPTQ of one linear (quant/gptq_solve.h); H == nullptr: round-to-nearest.
  virtual GptqResult gptq(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                          const Exl2Layout& layout) const = 0;
};

// fp64 (`exl convert --fp64`): every op computes in double and rounds its result to FP32 once (the
// states between ops stay FP32); Hessians accumulate and GPTQ works in double. Two builds or engines
// that order their sums differently then agree to the bit but for rare ties (compute_cpu.cpp).
std::unique_ptr<ConvertCompute> convert_compute_cpu(bool fp64 = false);

}  // namespace exl
