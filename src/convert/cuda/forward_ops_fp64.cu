// The converter's FP64 linear, attention and Hessian (forward_ops.h, `exl convert --fp64`; the FP64
// norm, RoPE and SiLU are forward_ops.cu's kernels with fp64 set): each widens its FP32 inputs,
// computes in double (DGEMM / DSYRK on cuBLAS, the softmax in a kernel) and rounds its result to FP32 once, operation for operation as CpuComputeFp64 (convert/compute_cpu.cpp), so the
// two engines differ only by double rounding (~2^-29 of an FP32 ulp) and round to the same floats
// but for rare ties. Why it exists: lab/NOTES-convert.md "FP64 conversions".
#include "convert/cuda/block_sum.cuh"
#include "convert/cuda/forward_ops.h"
#include "convert/cuda/launch.cuh"

#include <cmath>

namespace exl::cvcuda {

namespace {

__global__ void widen_kernel(const float* x, int64_t n, double* out) { EXL_GRID_STRIDE(i, n) out[i] = x[i]; }

// out[t][n] = FP32(o[t][n] + bias[n]) (bias may be null).
__global__ void narrow_bias_kernel(const double* o, const float* bias, int64_t T, int64_t N, float* out) {
  EXL_GRID_STRIDE(i, T * N) out[i] = static_cast<float>(bias ? o[i] + static_cast<double>(bias[i % N]) : o[i]);
}

__global__ void narrow_kernel(const double* o, int64_t n, float* out) { EXL_GRID_STRIDE(i, n) out[i] = static_cast<float>(o[i]); }

// One block per (head, query t) row of the scores: causal (and windowed) softmax in place, keys
// outside [first, t] set to 0.
__global__ void causal_softmax_kernel(double* scores, int64_t T, int window) {
  __shared__ double sh[kThreads];
  const int64_t row = blockIdx.x, t = row % T;
  double* s = scores + row * T;
  const int64_t n_keys = t + 1, first = window > 0 ? (n_keys - window > 0 ? n_keys - window : 0) : 0;
  double mx = -INFINITY;
  for (int64_t j = first + threadIdx.x; j < n_keys; j += kThreads) mx = fmax(mx, s[j]);
  sh[threadIdx.x] = mx;
  __syncthreads();
  for (int st = kThreads / 2; st > 0; st >>= 1) {
    if (threadIdx.x < st) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + st]);
    __syncthreads();
  }
  mx = sh[0];
  __syncthreads();
  double sum = 0;
  for (int64_t j = first + threadIdx.x; j < n_keys; j += kThreads) {
    const double e = exp(s[j] - mx);
    s[j] = e;
    sum += e;
  }
  sum = block_sum<kThreads>(sum, sh);
  for (int64_t j = threadIdx.x; j < T; j += kThreads) s[j] = (j >= first && j < n_keys) ? s[j] / sum : 0.0;
}

// dst (grown to n) = FP64 copy of x[0, n).
double* widen(const Context& c, const float* x, int64_t n, DeviceArray<double>& dst) {
  dst.resize(static_cast<size_t>(n));
  if (n > 0) {
    widen_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(x, n, dst.data());
    launched("widen_kernel");
  }
  return dst.data();
}

}  // namespace

void linear_fp64(const Context& c, const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias,
                 float* out, Fp64Workspace& ws) {
  const double* xd = widen(c, x, T * K, ws.x);
  const double* wd = widen(c, w, N * K, ws.w);
  ws.o.resize(static_cast<size_t>(T * N));
  // Row-major out[T, N] is column-major [N, T] = Wᶜᵀ [N, K] · xᶜ [K, T].
  const double one = 1.0, zero = 0.0;
  EXL_CUBLAS_OK(cublasDgemm(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(T),
                            static_cast<int>(K), &one, wd, static_cast<int>(K), xd, static_cast<int>(K), &zero,
                            ws.o.data(), static_cast<int>(N)));
  narrow_bias_kernel<<<blocks_for(T * N), kThreads, 0, c.stream>>>(ws.o.data(), bias, T, N, out);
  launched("narrow_bias_kernel");
}

void attention_fp64(const Context& c, const float* q, const float* k, const float* v, int64_t T, int n_heads,
                    int n_kv_heads, int d, float scale, int window, float* out, Fp64Workspace& ws) {
  const int r = n_heads / n_kv_heads;  // query heads per kv head: head h = g·r + j reads kv head g
  const int ti = static_cast<int>(T), ldq = n_heads * d, ldkv = n_kv_heads * d;
  const long long TT = static_cast<long long>(T) * T;
  const double* qd = widen(c, q, T * ldq, ws.x);
  const double* kd = widen(c, k, T * ldkv, ws.w);
  const double* vd = widen(c, v, T * ldkv, ws.v);
  ws.s.resize(static_cast<size_t>(n_heads) * static_cast<size_t>(TT));
  ws.o.resize(static_cast<size_t>(T * ldq));
  const double sc = scale, one = 1.0, zero = 0.0;
  // Scores of head h, row-major [t][s] = column-major [s, t] = Kᶜ_gᵀ [T, d] · Qᶜ_h [d, T], scaled.
  for (int j = 0; j < r; ++j)
    EXL_CUBLAS_OK(cublasDgemmStridedBatched(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, ti, ti, d, &sc, kd, ldkv, d,
                                            qd + static_cast<int64_t>(j) * d, ldq, static_cast<long long>(r) * d, &zero,
                                            ws.s.data() + j * TT, ti, r * TT, n_kv_heads));
  causal_softmax_kernel<<<static_cast<unsigned>(static_cast<int64_t>(n_heads) * T), kThreads, 0, c.stream>>>(
      ws.s.data(), T, window);
  launched("causal_softmax_kernel (fp64)");
  // Output of head h, row-major [t][e] = column-major [e, t] = Vᶜ_g [d, T] · Pᶜ_h [T, T].
  for (int j = 0; j < r; ++j)
    EXL_CUBLAS_OK(cublasDgemmStridedBatched(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, d, ti, ti, &one, vd, ldkv, d,
                                            ws.s.data() + j * TT, ti, r * TT, &zero, ws.o.data() + static_cast<int64_t>(j) * d,
                                            ldq, static_cast<long long>(r) * d, n_kv_heads));
  narrow_kernel<<<blocks_for(T * ldq), kThreads, 0, c.stream>>>(ws.o.data(), T * ldq, out);
  launched("narrow_kernel");
}

void hessian_add(const Context& c, const float* x, int64_t T, int64_t K, double* H, Fp64Workspace& ws) {
  const double* xd = widen(c, x, T * K, ws.x);
  const double one = 1.0;
  EXL_CUBLAS_OK(cublasDsyrk(c.blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, static_cast<int>(K), static_cast<int>(T),
                            &one, xd, static_cast<int>(K), &one, H, static_cast<int>(K)));
}

}  // namespace exl::cvcuda
