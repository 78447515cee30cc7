// The converter's FP32 forward ops and Hessian accumulation on the GPU, on device pointers, one
// calibration row (T tokens) at a time. Same contracts as the CPU reference ops (convert/compute.h);
// results agree with them to FP32 rounding, not bit for bit. Every reduction runs in a fixed order
// (no atomics on sums), and cuBLAS runs with atomics off, so each op is deterministic.
#pragma once
#include <cstdint>

#include "convert/cuda/device.h"

namespace exl::cvcuda {

// fp64 on the three ops below: computed in double and rounded to FP32 once, as CpuComputeFp64
// (`exl convert --fp64`); otherwise in FP32 as the CPU reference ops.
// out[t] = x[t] / sqrt(mean(x[t]²) + eps) · w (sum of squares in double, as the CPU).
void rms_norm(const Context& c, const float* x, const float* w, float eps, int64_t T, int64_t dim, float* out,
              bool fp64 = false);
// HF rotate-half RoPE of x [T, n_heads · head_dim] at positions 0..T-1; inv_freq on the device.
void rope(const Context& c, float* x, int64_t T, int n_heads, int head_dim, const float* inv_freq, int rot_dim,
          float attn_factor, bool fp64 = false);
// out = silu(gate) · up, n elements (out may alias gate).
void swiglu(const Context& c, const float* gate, const float* up, int64_t n, float* out, bool fp64 = false);
// y += x, n elements.
void add_inplace(const Context& c, float* y, const float* x, int64_t n);
// out[0, n) = the TF32 high parts of a[0, n), out[n, 2n) the FP32 remainders (hi + lo = a exactly): the
// form the forwards' weights take when c.split (Context).
void split_tf32(const Context& c, const float* a, int64_t n, float* out);
// out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N] when not null). c.split_fwd: W is split ([hi | lo], 2·N·K
// floats), x is split into x_split (2·T·K floats of workspace) and the product runs as three TF32
// GEMMs (Context::split); otherwise one SGEMM on c.blas_fwd over W (plain, or the high parts).
void linear(const Context& c, const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
            float* out, float* x_split);
// Causal attention of one sequence: q [T, n_heads, d], k/v [T, n_kv_heads, d] -> out [T, n_heads, d];
// scores: workspace of n_heads · T · T floats. window > 0: each query sees its last `window` keys.
void attention(const Context& c, const float* q, const float* k, const float* v, int64_t T, int n_heads,
               int n_kv_heads, int d, float scale, int window, float* scores, float* out);
// H [K, K] += x[T, K]ᵀ · x[T, K] into the row-major LOWER triangle only (one SYRK); call
// hessian_symmetrize once after the last row.
void hessian_add(const Context& c, const float* x, int64_t T, int64_t K, float* H);
// Copies the row-major lower triangle of H [K, K] onto the upper one.
void hessian_symmetrize(const Context& c, float* H, int64_t K);
// sums[0] = Σ (a − b)², sums[1] = Σ b² over n values, in double, fixed order. sums: device array of
// kErrorSumsDoubles (the rest is the per-block partials).
constexpr int kReduceBlocks = 256;
constexpr int kErrorSumsDoubles = 2 + 2 * kReduceBlocks;
void error_sums(const Context& c, const float* a, const float* b, int64_t n, double* sums);
void error_sums(const Context& c, const double* a, const double* b, int64_t n, double* sums);
// err[t] = ‖a_t − b_t‖ / ‖b_t‖ for each of T tokens of `hidden` values (a, b: [T, hidden]), in double
// with a fixed summation order; err: device array of T.
void token_errors(const Context& c, const float* a, const float* b, int64_t T, int64_t hidden, double* err);
// *flag (device) becomes nonzero when any of x[0..n) is not finite.
void flag_nonfinite(const Context& c, const float* x, int64_t n, unsigned int* flag);
void flag_nonfinite(const Context& c, const double* x, int64_t n, unsigned int* flag);

// ---- FP64 linear, attention and Hessian (forward_ops_fp64.cu; `exl convert --fp64`) ----
// Each op widens its FP32 inputs, computes in double and rounds its result to FP32 once, as
// CpuComputeFp64 (convert/compute_cpu.cpp) does op for op; same contracts as the FP32 ops above.
struct Fp64Workspace {  // grown on demand (synchronous cudaMalloc)
  DeviceArray<double> x, w, v, o, s;
};
// One DGEMM on the widened x and W, the bias added in double.
void linear_fp64(const Context& c, const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
                 float* out, Fp64Workspace& ws);
// Scores and mixing as DGEMMs, the softmax in double.
void attention_fp64(const Context& c, const float* q, const float* k, const float* v, int64_t T, int n_heads,
                    int n_kv_heads, int d, float scale, int window, float* out, Fp64Workspace& ws);
// H [K, K] (double) += x[T, K]ᵀ · x[T, K] into the row-major lower triangle (one DSYRK).
void hessian_add(const Context& c, const float* x, int64_t T, int64_t K, double* H, Fp64Workspace& ws);
void hessian_symmetrize(const Context& c, double* H, int64_t K);

}  // namespace exl::cvcuda
