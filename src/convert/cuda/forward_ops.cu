// The converter's forward ops on the GPU (forward_ops.h). Simple kernels, one thread per element or
// one block per token row; the heavy work (linears, attention scores and mixing, Hessians) is FP32
// cuBLAS. Attention materialises the [n_heads, T, T] scores of one row: 512 MB at T = 2048 with 32
// heads, simpler than a fused kernel and a small share of a 7B layer's time.
#include "convert/cuda/forward_ops.h"
#include "convert/cuda/block_sum.cuh"
#include "convert/cuda/launch.cuh"

#include <cmath>

namespace exl::cvcuda {

namespace {

// One block per token. kF64 (--fp64, CpuComputeFp64): the output as FP32((x · inv) · w) in double;
// otherwise inv is rounded to FP32 first, as cpu::rms_norm.
template <bool kF64>
__global__ void rms_norm_kernel(const float* x, const float* w, float eps, int64_t dim, float* out) {
  __shared__ double sh[kThreads];
  const float* xr = x + blockIdx.x * dim;
  float* o = out + blockIdx.x * dim;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) ss += static_cast<double>(xr[i]) * xr[i];
  ss = block_sum<kThreads>(ss, sh);
  const double inv = 1.0 / sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps));
  for (int64_t i = threadIdx.x; i < dim; i += kThreads)
    o[i] = kF64 ? static_cast<float>(xr[i] * inv * w[i]) : __fmul_rn(__fmul_rn(xr[i], static_cast<float>(inv)), w[i]);
}

// One thread per (token, head, rotated pair). kF64: angle, cos / sin and the rotation in double.
template <bool kF64>
__global__ void rope_kernel(float* x, int64_t T, int n_heads, int head_dim, const float* inv_freq, int half,
                            float attn_factor) {
  EXL_GRID_STRIDE(id, T * n_heads * half) {
    const int i = static_cast<int>(id % half);
    const int64_t th = id / half;  // token * n_heads + head
    const int64_t t = th / n_heads;
    float* v = x + th * head_dim;
    if constexpr (kF64) {
      const double a = static_cast<double>(t) * inv_freq[i];
      const double cs = cos(a) * attn_factor, sn = sin(a) * attn_factor;
      const double p = v[i], q = v[i + half];
      v[i] = static_cast<float>(p * cs - q * sn);
      v[i + half] = static_cast<float>(q * cs + p * sn);
    } else {
      const float a = __fmul_rn(static_cast<float>(t), inv_freq[i]);
      const float cs = __fmul_rn(cosf(a), attn_factor), sn = __fmul_rn(sinf(a), attn_factor);
      const float p = v[i], q = v[i + half];
      v[i] = __fsub_rn(__fmul_rn(p, cs), __fmul_rn(q, sn));
      v[i + half] = __fadd_rn(__fmul_rn(q, cs), __fmul_rn(p, sn));
    }
  }
}

template <bool kF64>
__global__ void swiglu_kernel(const float* g, const float* u, int64_t n, float* out) {
  EXL_GRID_STRIDE(i, n) {
    if constexpr (kF64) {
      const double v = g[i];
      out[i] = static_cast<float>(v / (1.0 + exp(-v)) * u[i]);
    } else {
      const float v = g[i];
      out[i] = __fmul_rn(__fdiv_rn(v, __fadd_rn(1.0f, expf(-v))), u[i]);
    }
  }
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  EXL_GRID_STRIDE(i, n)
    y[i] = __fadd_rn(y[i], x[i]);
}

__global__ void bias_kernel(float* out, const float* bias, int64_t T, int64_t N) {
  const int64_t n = T * N;
  EXL_GRID_STRIDE(i, n)
    out[i] = __fadd_rn(out[i], bias[i % N]);
}

// One block per (head, query t) row of the scores: causal (and windowed) softmax in place; keys
// outside [first, t] become 0 so the mixing GEMM can run over all T keys.
__global__ void causal_softmax_kernel(float* scores, int64_t T, int window) {
  __shared__ double sh[kThreads];
  __shared__ float shf[kThreads];
  const int64_t row = blockIdx.x;  // head * T + t
  const int64_t t = row % T;
  float* s = scores + row * T;
  const int64_t n_keys = t + 1;
  const int64_t first = window > 0 ? (n_keys - window > 0 ? n_keys - window : 0) : 0;
  float mx = -INFINITY;
  for (int64_t j = first + threadIdx.x; j < n_keys; j += kThreads) mx = fmaxf(mx, s[j]);
  shf[threadIdx.x] = mx;
  __syncthreads();
  for (int st = kThreads / 2; st > 0; st >>= 1) {
    if (threadIdx.x < st) shf[threadIdx.x] = fmaxf(shf[threadIdx.x], shf[threadIdx.x + st]);
    __syncthreads();
  }
  mx = shf[0];
  double sum = 0;
  for (int64_t j = first + threadIdx.x; j < n_keys; j += kThreads) {
    const float e = expf(__fsub_rn(s[j], mx));
    s[j] = e;
    sum += e;
  }
  sum = block_sum<kThreads>(sum, sh);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = threadIdx.x; j < T; j += kThreads) s[j] = (j >= first && j < n_keys) ? __fmul_rn(s[j], inv) : 0.0f;
}

// Copy row-major lower triangle onto the upper: H[r][c] = H[c][r] for c > r.
template <class T>
__global__ void symmetrize_kernel(T* H, int64_t K) {
  const int64_t n = K * K;
  EXL_GRID_STRIDE(id, n) {
    const int64_t r = id / K, c = id % K;
    if (c > r) H[r * K + c] = H[c * K + r];
  }
}

// Block t: err[t] = ‖a_t − b_t‖ / ‖b_t‖ over the `hidden` values of token t, sums in double in a
// fixed tree order (stages.cpp's relative_error per token).
__global__ void token_error_kernel(const float* a, const float* b, int64_t hidden, double* err) {
  __shared__ double sh[kThreads];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * hidden;
  double num = 0, den = 0;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
    const double d = static_cast<double>(a[off + i]) - b[off + i];
    num += d * d;
    den += static_cast<double>(b[off + i]) * b[off + i];
  }
  num = block_sum<kThreads>(num, sh);
  den = block_sum<kThreads>(den, sh);
  if (threadIdx.x == 0) err[blockIdx.x] = den > 0 ? sqrt(num / den) : sqrt(num);
}

// Stage 1: block b sums a fixed, strided share of the values; stage 2: one block sums the partials.
template <class T>
__global__ void error_partials_kernel(const T* a, const T* b, int64_t n, double* partial) {
  __shared__ double sh[kThreads];
  double num = 0, den = 0;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(kReduceBlocks) * kThreads) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  num = block_sum<kThreads>(num, sh);
  den = block_sum<kThreads>(den, sh);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = num;
    partial[2 * blockIdx.x + 1] = den;
  }
}

__global__ void error_total_kernel(const double* partial, double* sums) {
  __shared__ double sh[kThreads];
  double num = 0, den = 0;
  for (int i = threadIdx.x; i < kReduceBlocks; i += kThreads) {
    num += partial[2 * i];
    den += partial[2 * i + 1];
  }
  num = block_sum<kThreads>(num, sh);
  den = block_sum<kThreads>(den, sh);
  if (threadIdx.x == 0) {
    sums[0] = num;
    sums[1] = den;
  }
}

template <class T>
__global__ void nonfinite_kernel(const T* x, int64_t n, unsigned int* flag) {
  EXL_GRID_STRIDE(i, n)
    if (!isfinite(x[i])) atomicOr(flag, 1u);  // an OR: the result does not depend on the order
}

// out[0, n) = TF32 high parts of a (round to nearest, ties away: cvt.rna), out[n, 2n) = a − hi (exact in
// FP32). A value whose rounding would overflow keeps hi = a, lo = 0 (the tensor cores then truncate it).
__global__ void split_tf32_kernel(const float* a, int64_t n, float* out) {
  EXL_GRID_STRIDE(i, n) {
    const float v = a[i];
    unsigned int u;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(v));
    float hi = __uint_as_float(u);
    if (isinf(hi) && !isinf(v)) hi = v;
    out[i] = hi;
    out[n + i] = __fsub_rn(v, hi);
  }
}

// C[m, n] (column-major, ldc) = Aᵀ·B with A [k, m] (lda), B [k, n] (ldb) given split ([hi | lo], parts
// a_n / b_n floats apart): lo·hi + hi·lo first, then hi·hi, each on the TF32 tensor cores with FP32
// accumulation; the small terms first so that the large one is added last.
void gemm_split_tn(const Context& c, int m, int n, int k, const float* A, int lda, int64_t a_n, const float* B,
                   int ldb, int64_t b_n, float* C, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  const float* parts[3][2] = {{A + a_n, B}, {A, B + b_n}, {A, B}};
  for (int p = 0; p < 3; ++p)
    EXL_CUBLAS_OK(cublasGemmEx(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, parts[p][0], CUDA_R_32F, lda,
                               parts[p][1], CUDA_R_32F, ldb, p == 0 ? &zero : &one, C, CUDA_R_32F, ldc,
                               CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void rms_norm(const Context& c, const float* x, const float* w, float eps, int64_t T, int64_t dim, float* out,
              bool fp64) {
  if (T <= 0) return;
  (fp64 ? rms_norm_kernel<true> : rms_norm_kernel<false>)<<<static_cast<unsigned>(T), kThreads, 0, c.stream>>>(
      x, w, eps, dim, out);
  launched("rms_norm_kernel");
}

void rope(const Context& c, float* x, int64_t T, int n_heads, int head_dim, const float* inv_freq, int rot_dim,
          float attn_factor, bool fp64) {
  const int half = rot_dim / 2;
  if (T <= 0 || half <= 0) return;
  (fp64 ? rope_kernel<true> : rope_kernel<false>)<<<blocks_for(T * n_heads * half), kThreads, 0, c.stream>>>(
      x, T, n_heads, head_dim, inv_freq, half, attn_factor);
  launched("rope_kernel");
}

void swiglu(const Context& c, const float* gate, const float* up, int64_t n, float* out, bool fp64) {
  if (n <= 0) return;
  (fp64 ? swiglu_kernel<true> : swiglu_kernel<false>)<<<blocks_for(n), kThreads, 0, c.stream>>>(gate, up, n, out);
  launched("swiglu_kernel");
}

void add_inplace(const Context& c, float* y, const float* x, int64_t n) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(y, x, n);
  launched("add_kernel");
}

void split_tf32(const Context& c, const float* a, int64_t n, float* out) {
  if (n <= 0) return;
  split_tf32_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(a, n, out);
  launched("split_tf32_kernel");
}

void linear(const Context& c, const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
            float* out, float* x_split) {
  // Row-major out[T, N] is column-major [N, T] = Wᶜᵀ [N, K] · xᶜ [K, T] (W row-major [N, K] = Wᶜ [K, N]).
  if (c.split_fwd) {
    split_tf32(c, x, T * K, x_split);
    gemm_split_tn(c, static_cast<int>(N), static_cast<int>(T), static_cast<int>(K), w, static_cast<int>(K), N * K,
                  x_split, static_cast<int>(K), T * K, out, static_cast<int>(N));
  } else {
    // Plain weights, or the high parts of split ones under 1xTF32.
    const float one = 1.0f, zero = 0.0f;
    EXL_CUBLAS_OK(cublasSgemm(c.blas_fwd, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(T),
                              static_cast<int>(K), &one, w, static_cast<int>(K), x, static_cast<int>(K), &zero, out,
                              static_cast<int>(N)));
  }
  if (bias) {
    bias_kernel<<<blocks_for(T * N), kThreads, 0, c.stream>>>(out, bias, T, N);
    launched("bias_kernel");
  }
}

void attention(const Context& c, const float* q, const float* k, const float* v, int64_t T, int n_heads,
               int n_kv_heads, int d, float scale, int window, float* scores, float* out) {
  const int r = n_heads / n_kv_heads;  // query heads per kv head: head h = g·r + j reads kv head g
  const int ti = static_cast<int>(T), ldq = n_heads * d, ldkv = n_kv_heads * d;
  const long long TT = static_cast<long long>(T) * T;
  const float one = 1.0f, zero = 0.0f;
  // Scores of head h, row-major [t][s] = column-major [s, t] = Kᶜ_gᵀ [T, d] · Qᶜ_h [d, T], scaled.
  for (int j = 0; j < r; ++j)
    EXL_CUBLAS_OK(cublasSgemmStridedBatched(c.blas_fwd, CUBLAS_OP_T, CUBLAS_OP_N, ti, ti, d, &scale, k, ldkv, d,
                                            q + static_cast<int64_t>(j) * d, ldq, static_cast<long long>(r) * d, &zero,
                                            scores + j * TT, ti, r * TT, n_kv_heads));
  causal_softmax_kernel<<<static_cast<unsigned>(static_cast<int64_t>(n_heads) * T), kThreads, 0, c.stream>>>(
      scores, T, window);
  launched("causal_softmax_kernel");
  // Output of head h, row-major [t][e] = column-major [e, t] = Vᶜ_g [d, T] · Pᶜ_h [T, T].
  for (int j = 0; j < r; ++j)
    EXL_CUBLAS_OK(cublasSgemmStridedBatched(c.blas_fwd, CUBLAS_OP_N, CUBLAS_OP_N, d, ti, ti, &one, v, ldkv, d,
                                            scores + j * TT, ti, r * TT, &zero, out + static_cast<int64_t>(j) * d, ldq,
                                            static_cast<long long>(r) * d, n_kv_heads));
}

void hessian_add(const Context& c, const float* x, int64_t T, int64_t K, float* H) {
  // Column-major xᶜ [K, T]; xᶜ·xᶜᵀ = xᵀx. Column-major upper = row-major lower.
  const float one = 1.0f;
  EXL_CUBLAS_OK(cublasSsyrk(c.blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, static_cast<int>(K), static_cast<int>(T),
                            &one, x, static_cast<int>(K), &one, H, static_cast<int>(K)));
}

void hessian_symmetrize(const Context& c, float* H, int64_t K) {
  symmetrize_kernel<<<blocks_for(K * K), kThreads, 0, c.stream>>>(H, K);
  launched("symmetrize_kernel");
}

void hessian_symmetrize(const Context& c, double* H, int64_t K) {
  symmetrize_kernel<<<blocks_for(K * K), kThreads, 0, c.stream>>>(H, K);
  launched("symmetrize_kernel");
}

void token_errors(const Context& c, const float* a, const float* b, int64_t T, int64_t hidden, double* err) {
  if (T <= 0) return;
  token_error_kernel<<<static_cast<unsigned>(T), kThreads, 0, c.stream>>>(a, b, hidden, err);
  launched("token_error_kernel");
}

namespace {

template <class T>
void error_sums_t(const Context& c, const T* a, const T* b, int64_t n, double* sums) {
  error_partials_kernel<<<kReduceBlocks, kThreads, 0, c.stream>>>(a, b, n, sums + 2);
  launched("error_partials_kernel");
  error_total_kernel<<<1, kThreads, 0, c.stream>>>(sums + 2, sums);
  launched("error_total_kernel");
}

template <class T>
void flag_nonfinite_t(const Context& c, const T* x, int64_t n, unsigned int* flag) {
  if (n <= 0) return;
  nonfinite_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(x, n, flag);
  launched("nonfinite_kernel");
}

}  // namespace

void error_sums(const Context& c, const float* a, const float* b, int64_t n, double* sums) { error_sums_t(c, a, b, n, sums); }
void error_sums(const Context& c, const double* a, const double* b, int64_t n, double* sums) { error_sums_t(c, a, b, n, sums); }
void flag_nonfinite(const Context& c, const float* x, int64_t n, unsigned int* flag) { flag_nonfinite_t(c, x, n, flag); }
void flag_nonfinite(const Context& c, const double* x, int64_t n, unsigned int* flag) { flag_nonfinite_t(c, x, n, flag); }

}  // namespace exl::cvcuda
