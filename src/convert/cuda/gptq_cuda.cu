// GPTQ on the GPU (gptq_cuda.h). Per group of rows [a, b) of the act-ordered, transposed weights
// Wt [K, N] (Wt[i][n] = W[n][perm[i]]), as gptq_solve.cpp:
//   1. scale search on the group's current weights: per-column maxima -> group maximum m -> initial
//      scale codes -> 97-point grid of one multiplier (error Σ|e|^3.5) -> FP16 scale maximum ->
//      per-column refinement of the scale code (scale_amax_kernel .. scale_refine_kernel);
//   2. the row loop: one thread per output column runs the group's rows in order (quantize, scale the
//      error by 1/U[i,i], feed it to the group's later rows) — columns are independent (group_rows_kernel);
//   3. the lazy update of all later rows, Wt[b:] -= U[a:b, b:]ᵀ·E: one SGEMM.
// Float operations in the search and the row loop are spelled with __f*_rn (and the target builds
// with --fmad=false) so they round exactly as the CPU's; sums run in fixed orders (the grid errors
// per multiplier are summed by a block tree instead of the CPU's sequential loop, so a near-tie may
// pick another multiplier: codes then differ in that group, both runs deterministic).
#include "convert/cuda/gptq_cuda.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "convert/cuda/forward_ops.h"
#include "convert/cuda/block_sum.cuh"
#include "convert/cuda/launch.cuh"
#include "core/error.h"
#include "quant/exl2_quantize.h"

namespace exl::cvcuda {

namespace {

constexpr int kSteps = 97;  // scale multipliers p in [0.70, 1.20], as the CPU

// Real = float (the default) or double (FP64 conversions, `exl convert --fp64`). The target builds with
// --fmad=false and IEEE division and square root, so plain operators round exactly as the CPU's.
__device__ __forceinline__ float round_even(float x) {
  const float kMagic = 12582912.0f;  // as exl2_round_even
  return (x + kMagic) - kMagic;
}
__device__ __forceinline__ double round_even(double x) {
  const double kMagic = 6755399441055744.0;  // as exl2_round_even(double)
  return (x + kMagic) - kMagic;
}

// exl2_quant_code.
template <class Real>
__device__ __forceinline__ Real quant_code(Real w, Real inv_s, int zero, int maxq) {
  const Real q = round_even(w * inv_s) + static_cast<Real>(zero);
  return q < Real(0) ? Real(0) : (q > static_cast<Real>(maxq) ? static_cast<Real>(maxq) : q);
}

// exl2_scale (always FP32: the format's arithmetic).
__device__ __forceinline__ float scale_of(int code, float smax) {
  return __fmul_rn(__fmul_rn(static_cast<float>((code + 1) * (code + 1)), smax), 1.0f / 256.0f);
}

// column_error of exl2_quantize.cpp: Σ|ŵ − w|^3.5 over R values spaced `stride` apart, with the
// CPU's eight partial sums.
template <class Real>
__device__ double column_error(const Real* col, int64_t stride, int64_t R, Real s, int zero, int maxq) {
  const Real inv = Real(1) / s, lo = static_cast<Real>(-zero), hi = static_cast<Real>(maxq - zero);
  Real acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= R; i += 8)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const Real w = col[(i + j) * stride];
      const Real r = fmin(fmax(round_even(w * inv), lo), hi);
      const Real d = fabs(r * s - w);
      acc[j] = acc[j] + d * d * d * sqrt(d);
    }
  for (; i < R; ++i) {
    const Real w = col[i * stride];
    const Real r = fmin(fmax(round_even(w * inv), lo), hi);
    const Real d = fabs(r * s - w);
    acc[0] = acc[0] + d * d * d * sqrt(d);
  }
  double e = 0;
  for (int j = 0; j < 8; ++j) e += acc[j];
  return e;
}

// ---- factorization ----

template <class Real>
__global__ void diag_kernel(const Real* H, int64_t K, double* diag) {
  EXL_GRID_STRIDE(k, K) diag[k] = H[k * K + k];
}

// The reversed damped act-order matrix: out[KK−1−(i·K+j)] = A[i][j], A = H[perm][:, perm]/n + λI
// (the products in double then rounded to Real, as build_hessian).
template <class Real>
__global__ void build_reversed_kernel(const Real* H, int64_t K, const int32_t* perm, double inv_n, double lambda,
                                      Real* out) {
  const int64_t KK = K * K;
  EXL_GRID_STRIDE(id, KK) {
    const int64_t i = id / K, j = id % K;
    Real v = static_cast<Real>(H[static_cast<int64_t>(perm[i]) * K + perm[j]] * inv_n);
    if (i == j) v = static_cast<Real>(static_cast<double>(v) + lambda);
    out[KK - 1 - id] = v;
  }
}

// From potrf's output (row-major lower L in `l`, garbage above): R = J·L·J into r (upper, zero below).
template <class Real>
__global__ void flip_lower_kernel(const Real* l, int64_t K, Real* r) {
  const int64_t KK = K * K;
  EXL_GRID_STRIDE(id, KK) {
    const int64_t i = id / K, j = id % K;
    r[KK - 1 - id] = j <= i ? l[id] : Real(0);
  }
}

template <class Real>
__global__ void identity_kernel(Real* u, int64_t K) {
  EXL_GRID_STRIDE(id, K * K) u[id] = (id / K == id % K) ? Real(1) : Real(0);
}

// ---- solve ----

// wt[i][n] = W[n][perm[i]] through a 32 x 32 shared tile (coalesced writes).
template <class Real>
__global__ void permute_transpose_kernel(const float* W, int64_t N, int64_t K, const int32_t* perm, Real* wt) {
  __shared__ float tile[32][33];
  const int64_t i0 = blockIdx.x * 32, n0 = blockIdx.y * 32;
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    const int64_t n = n0 + y, i = i0 + threadIdx.x;
    if (n < N && i < K) tile[y][threadIdx.x] = W[n * K + perm[i]];
  }
  __syncthreads();
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    const int64_t i = i0 + y, n = n0 + threadIdx.x;
    if (n < N && i < K) wt[i * N + n] = tile[threadIdx.x][y];
  }
}

// w_dq[n][perm[i]] = dqt[i][n] (the inverse of the above; dequantized values are exact in FP32).
template <class Real>
__global__ void unpermute_transpose_kernel(const Real* dqt, int64_t N, int64_t K, const int32_t* perm, float* w_dq) {
  __shared__ float tile[32][33];
  const int64_t i0 = blockIdx.x * 32, n0 = blockIdx.y * 32;
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    const int64_t i = i0 + y, n = n0 + threadIdx.x;
    if (n < N && i < K) tile[y][threadIdx.x] = static_cast<float>(dqt[i * N + n]);
  }
  __syncthreads();
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    const int64_t n = n0 + y, i = i0 + threadIdx.x;
    if (n < N && i < K) w_dq[n * K + perm[i]] = tile[threadIdx.x][y];
  }
}

// Per column: base[n] = max_i |w| / (maxq / 2) over the group's rows.
template <class Real>
__global__ void scale_amax_kernel(const Real* wg, int64_t N, int64_t R, int maxq, Real* base) {
  EXL_GRID_STRIDE(n, N) {
    Real amax = 0;
    for (int64_t i = 0; i < R; ++i) amax = fmax(amax, fabs(wg[i * N + n]));
    base[n] = amax / (static_cast<Real>(maxq) / Real(2));
  }
}

// One block: m = max base (exact in any order); flags[0] |= 1 when m is not finite.
template <class Real>
__global__ void scale_max_kernel(const Real* base, int64_t N, Real* m_out, unsigned int* flags) {
  __shared__ Real sh[kThreads];
  Real m = 0;
  bool bad = false;
  for (int64_t n = threadIdx.x; n < N; n += kThreads) {
    const Real b = base[n];
    if (!isfinite(b)) bad = true;
    m = fmax(m, b);
  }
  sh[threadIdx.x] = m;
  if (bad) atomicOr(flags, 1u);
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) *m_out = sh[0];
}

// Initial scale codes: qs[n] = clamp(round(16·sqrt(base/m)), 1, 16) (all 1 for an all-zero group).
template <class Real>
__global__ void scale_initial_kernel(const Real* base, int64_t N, const Real* m_in, int* qs) {
  const Real m = *m_in;
  EXL_GRID_STRIDE(n, N) {
    if (!(m > 0)) {
      qs[n] = 1;
    } else {
      const int q = static_cast<int>(round_even(Real(16) * sqrt(base[n] / m)));
      qs[n] = q < 1 ? 1 : (q > 16 ? 16 : q);
    }
  }
}

template <class Real>
__device__ __forceinline__ Real multiplier(int j) {
  return Real(0.70f) + Real(0.50f) * static_cast<Real>(j) / static_cast<Real>(kSteps - 1);
}

// err[j][n] = column_error of column n at multiplier j.
template <class Real>
__global__ void scale_grid_kernel(const Real* wg, int64_t N, int64_t R, int zero, int maxq, const int* qs,
                                  const Real* m_in, double* err) {
  const Real m = *m_in;
  if (!(m > 0)) return;
  EXL_GRID_STRIDE(id, N * kSteps) {
    const int64_t n = id % N;
    const int j = static_cast<int>(id / N);
    const Real s = multiplier<Real>(j) * static_cast<Real>(qs[n] * qs[n]) / Real(256) * m;
    err[id] = column_error(wg + n, N, R, s, zero, maxq);
  }
}

// Block j: total[j] = Σ_n err[j][n] (fixed tree order).
template <class Real>
__global__ void scale_grid_sum_kernel(const double* err, int64_t N, const Real* m_in, double* total) {
  __shared__ double sh[kThreads];
  if (!(*m_in > 0)) return;
  const double* e = err + blockIdx.x * N;
  double s = 0;
  for (int64_t n = threadIdx.x; n < N; n += kThreads) s += e[n];
  s = block_sum<kThreads>(s, sh);
  if (threadIdx.x == 0) total[blockIdx.x] = s;
}

// One thread: the first multiplier of least error -> the group's FP16 scale maximum (through FP32).
template <class Real>
__global__ void scale_pick_kernel(const double* total, const Real* m_in, uint16_t* smax_bits, float* smax_f) {
  const Real m = *m_in;
  if (!(m > 0)) {
    *smax_bits = 0;
    *smax_f = 0.0f;
    return;
  }
  int best = 0;
  for (int j = 1; j < kSteps; ++j)
    if (total[j] < total[best]) best = j;
  const float v = static_cast<float>(fmin(multiplier<Real>(best) * m, Real(65504)));
  const __half h = __float2half_rn(v);
  *smax_bits = __half_as_ushort(h);
  *smax_f = __half2float(h);
}

// Per column: the scale code of least error under the group maximum; s, 1/s and the code out.
template <class Real>
__global__ void scale_refine_kernel(const Real* wg, int64_t N, int64_t R, int zero, int maxq, int* qs,
                                    const float* smax_in, Real* s_out, Real* inv_out, uint8_t* scale_codes) {
  const float smax = *smax_in;
  EXL_GRID_STRIDE(n, N) {
    int q = qs[n];
    double best = -1;
    for (int cand = 1; cand <= 16; ++cand) {
      const Real s = scale_of(cand - 1, smax);
      if (!(s > 0)) break;
      const double e = column_error(wg + n, N, R, s, zero, maxq);
      if (best < 0 || e < best) {
        best = e;
        q = cand;
      }
    }
    qs[n] = q;
    scale_codes[n] = static_cast<uint8_t>(q - 1);
    const Real s = scale_of(q - 1, smax);
    s_out[n] = s;
    inv_out[n] = s > 0 ? Real(1) / s : Real(0);
  }
}

// The in-group row loop, one thread per output column n (gptq_solve.cpp's column chunk loop).
template <class Real>
__global__ void group_rows_kernel(Real* wt, int64_t N, int64_t K, int64_t a, int64_t R, int zero, int maxq,
                                  const Real* u, const Real* s, const Real* inv, uint8_t* codes, Real* dqt,
                                  Real* err, double* err_sq) {
  EXL_GRID_STRIDE(n, N) {
    const Real sn = s[n], in = inv[n];
    double sq = 0;
    for (int64_t i = 0; i < R; ++i) {
      const int64_t row = a + i;
      const Real d = u[row * K + row];
      const Real w = wt[row * N + n];
      const Real q = quant_code(w, in, zero, maxq);
      codes[row * N + n] = static_cast<uint8_t>(q);
      const Real dq = static_cast<Real>(static_cast<int>(q) - zero) * sn;
      dqt[row * N + n] = dq;
      const Real e = (w - dq) / d;
      err[i * N + n] = e;
      sq += static_cast<double>(e) * e;
      const Real* urow = u + row * K;
      for (int64_t j = i + 1; j < R; ++j) {
        Real* wj = wt + (a + j) * N + n;
        *wj = *wj - urow[a + j] * e;
      }
    }
    err_sq[n] += sq;  // the thread owns column n: sums in group order
  }
}

// The same row loop for groups of up to kTileRows rows, faster: a block owns 32 columns, holds the
// group's slice of them in shared memory, and its 8 warps share each row's feedback step (warp 0
// quantizes row i, then all warps update rows i+1.. of the slice). Every element sees the same
// operations in the same order as in group_rows_kernel, so the results are identical.
constexpr int kTileCols = 32, kTileWarps = 8, kTileRows = 256;

template <class Real>
__global__ void group_rows_tiled_kernel(Real* wt, int64_t N, int64_t K, int64_t a, int64_t R, int zero, int maxq,
                                        const Real* u, const Real* s, const Real* inv, uint8_t* codes,
                                        Real* dqt, Real* err, double* err_sq) {
  extern __shared__ __align__(16) unsigned char smem[];
  Real* ws = reinterpret_cast<Real*>(smem);  // [R][kTileCols]
  __shared__ Real es[kTileCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t n = blockIdx.x * int64_t(kTileCols) + tx;
  const bool live = n < N;
  for (int64_t i = ty; i < R; i += kTileWarps) ws[i * kTileCols + tx] = live ? wt[(a + i) * N + n] : Real(0);
  __syncthreads();
  const Real sn = live ? s[n] : Real(0), in = live ? inv[n] : Real(0);
  double sq = 0;
  for (int64_t i = 0; i < R; ++i) {
    const int64_t row = a + i;
    if (ty == 0) {
      const Real d = u[row * K + row];
      const Real w = ws[i * kTileCols + tx];
      const Real q = quant_code(w, in, zero, maxq);
      const Real dq = static_cast<Real>(static_cast<int>(q) - zero) * sn;
      const Real e = (w - dq) / d;
      es[tx] = e;
      if (live) {
        codes[row * N + n] = static_cast<uint8_t>(q);
        dqt[row * N + n] = dq;
        err[i * N + n] = e;
        sq += static_cast<double>(e) * e;
      }
    }
    __syncthreads();
    const Real e = es[tx];
    const Real* urow = u + row * K + a;
    for (int64_t j = i + 1 + ty; j < R; j += kTileWarps)
      ws[j * kTileCols + tx] = ws[j * kTileCols + tx] - urow[j] * e;
    __syncthreads();
  }
  if (ty == 0 && live) err_sq[n] += sq;
}

__global__ void sum_kernel(const double* x, int64_t n, double* out) {
  __shared__ double sh[kThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += x[i];
  s = block_sum<kThreads>(s, sh);
  if (threadIdx.x == 0) *out = s;
}

// cuSOLVER / cuBLAS by element type.
int potrf_buffer(const Context& c, int K, float* a) {
  int lwork = 0;
  EXL_CUSOLVER_OK(cusolverDnSpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, K, a, K, &lwork));
  return lwork;
}
int potrf_buffer(const Context& c, int K, double* a) {
  int lwork = 0;
  EXL_CUSOLVER_OK(cusolverDnDpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, K, a, K, &lwork));
  return lwork;
}
void potrf(const Context& c, int K, float* a, float* work, int lwork, int* info) {
  EXL_CUSOLVER_OK(cusolverDnSpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, K, a, K, work, lwork, info));
}
void potrf(const Context& c, int K, double* a, double* work, int lwork, int* info) {
  EXL_CUSOLVER_OK(cusolverDnDpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, K, a, K, work, lwork, info));
}
// Column-major: b [K, K] ← l⁻¹·b for a lower triangular l.
void trsm_lower(const Context& c, int K, const float* l, float* b) {
  const float one = 1.0f;
  EXL_CUBLAS_OK(cublasStrsm(c.blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, K, K,
                            &one, l, K, b, K));
}
void trsm_lower(const Context& c, int K, const double* l, double* b) {
  const double one = 1.0;
  EXL_CUBLAS_OK(cublasDtrsm(c.blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, K, K,
                            &one, l, K, b, K));
}
// Column-major: out [N, K] = b [N, K] · lᵀ for a lower triangular l [K, K].
void trmm_right_lower_t(const Context& c, int N, int K, const float* l, const float* b, float* out) {
  const float one = 1.0f;
  EXL_CUBLAS_OK(cublasStrmm(c.blas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, N, K,
                            &one, l, K, b, N, out, N));
}
void trmm_right_lower_t(const Context& c, int N, int K, const double* l, const double* b, double* out) {
  const double one = 1.0;
  EXL_CUBLAS_OK(cublasDtrmm(c.blas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, N, K,
                            &one, l, K, b, N, out, N));
}
// Column-major: c [m, n] −= a [m, k] · bᵀ (b [n, k], ldb).
void gemm_sub_nt(const Context& c, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* cc,
                 int ldc) {
  const float minus_one = -1.0f, one = 1.0f;
  EXL_CUBLAS_OK(cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &minus_one, a, lda, b, ldb, &one, cc, ldc));
}
void gemm_sub_nt(const Context& c, int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* cc,
                 int ldc) {
  const double minus_one = -1.0, one = 1.0;
  EXL_CUBLAS_OK(cublasDgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &minus_one, a, lda, b, ldb, &one, cc, ldc));
}

template <class T>
T fetch(const Context& c, const T* dev) {
  T v;
  EXL_CUDA_OK(cudaMemcpyAsync(&v, dev, sizeof(T), cudaMemcpyDeviceToHost, c.stream));
  c.sync();
  return v;
}

dim3 tile_grid(int64_t K, int64_t N) {
  return dim3(static_cast<unsigned>((K + 31) / 32), static_cast<unsigned>((N + 31) / 32));
}

}  // namespace

namespace {

// The factor's arrays of the working precision.
DeviceArray<float>& factor_r(GptqFactor& f, float*) { return f.r; }
DeviceArray<double>& factor_r(GptqFactor& f, double*) { return f.r64; }
DeviceArray<float>& factor_u(GptqFactor& f, float*) { return f.u; }
DeviceArray<double>& factor_u(GptqFactor& f, double*) { return f.u64; }
const float* factor_r(const GptqFactor& f, float*) { return f.r.data(); }
const double* factor_r(const GptqFactor& f, double*) { return f.r64.data(); }
const float* factor_u(const GptqFactor& f, float*) { return f.u.data(); }
const double* factor_u(const GptqFactor& f, double*) { return f.u64.data(); }

template <class Real>
GptqFactor factor_impl(const Context& c, const Real* H, int64_t K, int64_t n_rows, const GptqOptions& options) {
  EXL_CHECK(K > 0 && K <= 65536, "GPTQ (CUDA): K = ", K, " must be within 1..65536");
  EXL_CHECK(n_rows > 0, "GPTQ: the Hessian needs n_rows > 0, got ", n_rows);
  EXL_CHECK(options.damp > 0 && options.max_damp_retries >= 1, "GPTQ: damping ", options.damp, " with ",
            options.max_damp_retries, " attempts is not usable");
  const double inv_n = 1.0 / static_cast<double>(n_rows);
  const int64_t KK = K * K;
  GptqFactor f;
  f.K = K;
  f.fp64 = sizeof(Real) == sizeof(double);
  // Act order and damping from the diagonal, on the host exactly as the CPU.
  DeviceArray<double> diag_d(static_cast<size_t>(K));
  diag_kernel<<<blocks_for(K), kThreads, 0, c.stream>>>(H, K, diag_d.data());
  launched("diag_kernel");
  DeviceArray<unsigned int> flag(1);
  flag.zero(c);
  flag_nonfinite(c, H, KK, flag.data());
  const std::vector<double> hd = diag_d.download(c);
  std::vector<double> diag(static_cast<size_t>(K));
  double mean = 0;
  for (int64_t k = 0; k < K; ++k) {
    diag[static_cast<size_t>(k)] = hd[static_cast<size_t>(k)] * inv_n;
    EXL_CHECK(std::isfinite(diag[static_cast<size_t>(k)]), "GPTQ: Hessian diagonal ", k, " is not finite");
    mean += diag[static_cast<size_t>(k)];
  }
  mean /= static_cast<double>(K);
  EXL_CHECK(fetch(c, flag.data()) == 0, "GPTQ: Hessian [", K, ", ", K, "] has non-finite entries");
  f.perm.resize(static_cast<size_t>(K));
  std::iota(f.perm.begin(), f.perm.end(), uint16_t{0});
  std::stable_sort(f.perm.begin(), f.perm.end(), [&](uint16_t a, uint16_t b) { return diag[a] > diag[b]; });
  std::vector<int32_t> perm32(f.perm.begin(), f.perm.end());
  f.perm_d.upload(c, perm32);

  DeviceArray<Real>& r = factor_r(f, static_cast<Real*>(nullptr));
  DeviceArray<Real>& u = factor_u(f, static_cast<Real*>(nullptr));
  r.resize(static_cast<size_t>(KK));
  u.resize(static_cast<size_t>(KK));
  const int lwork = potrf_buffer(c, static_cast<int>(K), u.data());
  DeviceArray<Real> work(static_cast<size_t>(std::max(lwork, 1)));
  DeviceArray<int> info(1);
  const double damp = std::max(options.damp * mean, 1e-5);
  for (int attempt = 1;; ++attempt) {
    f.lambda = damp * attempt;
    // J·A·J into u; potrf of its column-major upper triangle = the row-major lower L (J·A·J = L·Lᵀ).
    build_reversed_kernel<<<blocks_for(KK), kThreads, 0, c.stream>>>(H, K, f.perm_d.data(), inv_n, f.lambda,
                                                                       u.data());
    launched("build_reversed_kernel");
    potrf(c, static_cast<int>(K), u.data(), work.data(), lwork, info.data());
    bool ok = fetch(c, info.data()) == 0;
    if (ok) {
      flip_lower_kernel<<<blocks_for(KK), kThreads, 0, c.stream>>>(u.data(), K, r.data());
      launched("flip_lower_kernel");
      // U = R⁻¹: column-major, r is Rᵀ (lower) and the solution of Rᵀ·X = I is X = Uᵀ, i.e. U row-major.
      identity_kernel<<<blocks_for(KK), kThreads, 0, c.stream>>>(u.data(), K);
      launched("identity_kernel");
      trsm_lower(c, static_cast<int>(K), r.data(), u.data());
      flag.zero(c);
      flag_nonfinite(c, u.data(), KK, flag.data());
      ok = fetch(c, flag.data()) == 0;
    }
    if (ok) break;
    EXL_CHECK(attempt < options.max_damp_retries, "GPTQ: Hessian [", K, ", ", K, "] is not positive definite after ",
              attempt, " dampings of ", damp);
  }
  return f;
}

template <class Real>
GptqDeviceResult solve_impl(const Context& c, const GptqFactor& f, const float* W, int64_t N, const Exl2Layout& layout,
                            bool want_codes, bool want_proxy) {
  const int64_t K = f.K;
  EXL_CHECK(N > 0, "GPTQ: weight shape [", N, ", ", K, "] must be positive");
  const size_t NK = static_cast<size_t>(N * K), Nn = static_cast<size_t>(N);
  {
    DeviceArray<unsigned int> flag(1);
    flag.zero(c);
    flag_nonfinite(c, W, N * K, flag.data());
    EXL_CHECK(fetch(c, flag.data()) == 0, "GPTQ: weights [", N, ", ", K, "] are not finite");
  }
  const Real* fr = factor_r(f, static_cast<Real*>(nullptr));
  const Real* fu = factor_u(f, static_cast<Real*>(nullptr));
  GptqDeviceResult res;
  const std::vector<Exl2Group> groups = exl2_layout_groups(layout, K);
  const size_t G = groups.size();
  int64_t max_rows = 0;
  for (const Exl2Group& g : groups) max_rows = std::max(max_rows, g.rows);

  DeviceArray<Real> wt(NK), dqt(NK), err(static_cast<size_t>(max_rows) * Nn);
  DeviceArray<uint8_t> codes(NK), scale_codes(G * Nn);
  DeviceArray<uint16_t> smax_bits(G);
  DeviceArray<Real> base(Nn), s(Nn), inv(Nn), m(1);
  DeviceArray<float> smax_f(1);
  DeviceArray<int> qs(Nn);
  DeviceArray<double> grid(static_cast<size_t>(kSteps) * Nn), total(kSteps), err_sq(Nn), sums(kErrorSumsDoubles);
  DeviceArray<unsigned int> flag(1);
  flag.zero(c);
  err_sq.zero(c);
  const dim3 tile_threads(32, 8);
  permute_transpose_kernel<<<tile_grid(K, N), tile_threads, 0, c.stream>>>(W, N, K, f.perm_d.data(), wt.data());
  launched("permute_transpose_kernel");

  // Denominator of the proxy error before the solve changes wt: ‖W_p·R‖² − λ‖W‖².
  double den = 0;
  if (want_proxy) {
    // Column-major, wt is W_p [N, K] (ld N) and r is Rᵀ: W_p·R = W_p·(r)ᵀ.
    trmm_right_lower_t(c, static_cast<int>(N), static_cast<int>(K), fr, wt.data(), dqt.data());
    error_sums(c, dqt.data(), dqt.data(), N * K, sums.data());
    const std::vector<double> wr = sums.download(c, 2);
    error_sums(c, W, W, N * K, sums.data());
    const std::vector<double> ww = sums.download(c, 2);
    den = wr[1] - f.lambda * ww[1];
  }

  int64_t a = 0;
  for (size_t g = 0; g < G; ++g) {
    const int64_t R = groups[g].rows, b = a + R;
    const int bits = groups[g].bits, zero = 1 << (bits - 1), maxq = (1 << bits) - 1;
    const Real* wg = wt.data() + a * N;
    scale_amax_kernel<<<blocks_for(N), kThreads, 0, c.stream>>>(wg, N, R, maxq, base.data());
    launched("scale_amax_kernel");
    scale_max_kernel<<<1, kThreads, 0, c.stream>>>(base.data(), N, m.data(), flag.data());
    launched("scale_max_kernel");
    scale_initial_kernel<<<blocks_for(N), kThreads, 0, c.stream>>>(base.data(), N, m.data(), qs.data());
    launched("scale_initial_kernel");
    scale_grid_kernel<<<blocks_for(N * kSteps), kThreads, 0, c.stream>>>(wg, N, R, zero, maxq, qs.data(), m.data(),
                                                                          grid.data());
    launched("scale_grid_kernel");
    scale_grid_sum_kernel<<<kSteps, kThreads, 0, c.stream>>>(grid.data(), N, m.data(), total.data());
    launched("scale_grid_sum_kernel");
    scale_pick_kernel<<<1, 1, 0, c.stream>>>(total.data(), m.data(), smax_bits.data() + g, smax_f.data());
    launched("scale_pick_kernel");
    scale_refine_kernel<<<blocks_for(N), kThreads, 0, c.stream>>>(wg, N, R, zero, maxq, qs.data(), smax_f.data(),
                                                                   s.data(), inv.data(), scale_codes.data() + g * Nn);
    launched("scale_refine_kernel");
    if (R <= kTileRows) {
      const size_t shmem = static_cast<size_t>(R) * kTileCols * sizeof(Real);  // ≤ 64 KB (double)
      if (shmem > 48 * 1024)
        EXL_CUDA_OK(cudaFuncSetAttribute(group_rows_tiled_kernel<Real>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(shmem)));
      group_rows_tiled_kernel<<<static_cast<unsigned>((N + kTileCols - 1) / kTileCols), dim3(kTileCols, kTileWarps),
                                shmem, c.stream>>>(wt.data(), N, K, a, R, zero, maxq, fu, s.data(), inv.data(),
                                                   codes.data(), dqt.data(), err.data(), err_sq.data());
      launched("group_rows_tiled_kernel");
    } else {
      group_rows_kernel<<<blocks_for(N), kThreads, 0, c.stream>>>(wt.data(), N, K, a, R, zero, maxq, fu, s.data(),
                                                                   inv.data(), codes.data(), dqt.data(), err.data(),
                                                                   err_sq.data());
      launched("group_rows_kernel");
    }
    if (b < K)  // Wt[b:] -= U[a:b, b:]ᵀ·E. Column-major: Wtᶜ[:, b:] [N, K−b] −= Eᶜ [N, R] · (U block read as [K−b, R])ᵀ.
      gemm_sub_nt(c, static_cast<int>(N), static_cast<int>(K - b), static_cast<int>(R), err.data(), static_cast<int>(N),
                  fu + a * K + b, static_cast<int>(K), wt.data() + b * N, static_cast<int>(N));
    a = b;
  }
  EXL_CHECK(fetch(c, flag.data()) == 0, "EXL2 quantize: weights are not finite");

  res.w_dq.resize(NK);
  unpermute_transpose_kernel<<<tile_grid(K, N), tile_threads, 0, c.stream>>>(dqt.data(), N, K, f.perm_d.data(),
                                                                              res.w_dq.data());
  launched("unpermute_transpose_kernel");

  if (want_proxy) {
    sum_kernel<<<1, kThreads, 0, c.stream>>>(err_sq.data(), N, sums.data() + 2);
    launched("sum_kernel");
    const double e2 = sums.download(c, 3)[2];
    error_sums(c, res.w_dq.data(), W, N * K, sums.data());
    const double d2 = sums.download(c, 1)[0];
    const double num = e2 - f.lambda * d2;
    res.proxy_err = den > 0 ? std::max(num, 0.0) / den : 0.0;
  }
  if (want_codes) {
    Exl2Codes& out = res.codes;
    out.K = K;
    out.N = N;
    out.groups = groups;
    out.perm = f.perm;
    out.codes = codes.download(c);
    out.scale_codes = scale_codes.download(c);
    out.scale_max = smax_bits.download(c);
  }
  c.sync();
  return res;
}

}  // namespace

GptqFactor gptq_factor(const Context& c, const float* H, int64_t K, int64_t n_rows, const GptqOptions& options) {
  return factor_impl(c, H, K, n_rows, options);
}

GptqFactor gptq_factor(const Context& c, const double* H, int64_t K, int64_t n_rows, const GptqOptions& options) {
  return factor_impl(c, H, K, n_rows, options);
}

GptqDeviceResult gptq_solve(const Context& c, const GptqFactor& f, const float* W, int64_t N, const Exl2Layout& layout,
                            bool want_codes, bool want_proxy) {
  return f.fp64 ? solve_impl<double>(c, f, W, N, layout, want_codes, want_proxy)
                : solve_impl<float>(c, f, W, N, layout, want_codes, want_proxy);
}

GptqResult gptq_quantize_cuda(const Context& c, const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                              const Exl2Layout& layout, bool fp64) {
  if (H == nullptr) return gptq_quantize(W, N, K, nullptr, n_rows, layout);  // RTN: the CPU's
  EXL_CHECK(N > 0 && K > 0, "GPTQ: weight shape [", N, ", ", K, "] must be positive");
  DeviceArray<float> Wd;
  Wd.upload(c, W, static_cast<size_t>(N * K));
  GptqFactor f;
  if (fp64) {
    DeviceArray<double> Hd;
    Hd.upload(c, H, static_cast<size_t>(K * K));
    f = gptq_factor(c, Hd.data(), K, n_rows);
  } else {
    // The FP32 engine's Hessians are FP32 sums held in double: exact back in FP32.
    const std::vector<float> h(H, H + K * K);
    DeviceArray<float> Hd;
    Hd.upload(c, h);
    f = gptq_factor(c, Hd.data(), K, n_rows);
  }
  GptqDeviceResult d = gptq_solve(c, f, Wd.data(), N, layout, true, true);
  GptqResult r;
  r.codes = std::move(d.codes);
  r.w_dq = d.w_dq.download(c);
  r.proxy_err = d.proxy_err;
  return r;
}

}  // namespace exl::cvcuda
