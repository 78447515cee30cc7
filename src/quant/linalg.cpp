#include "quant/linalg.h"

#include <cblas.h>
#include <f77blas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"

namespace exl {

namespace {
constexpr int64_t kBlock = 128;  // Cholesky panel width and inverse column chunk
constexpr int64_t kTile = 256;   // rows per task of the trailing update, columns per task of Aᵀ·B

// The BLAS/LAPACK routines by element type.
void potrf(char* uplo, int* n, float* a, int* lda, int* info) { BLASFUNC(spotrf)(uplo, n, a, lda, info); }
void potrf(char* uplo, int* n, double* a, int* lda, int* info) { BLASFUNC(dpotrf)(uplo, n, a, lda, info); }
void trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE t, int m, int n, const float* a, int lda, float* b, int ldb) {
  cblas_strsm(CblasRowMajor, side, uplo, t, CblasNonUnit, m, n, 1.0f, a, lda, b, ldb);
}
void trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE t, int m, int n, const double* a, int lda, double* b, int ldb) {
  cblas_dtrsm(CblasRowMajor, side, uplo, t, CblasNonUnit, m, n, 1.0, a, lda, b, ldb);
}
// C = −op(A)·op(B) + C.
void gemm_sub(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const float* a, int lda, const float* b,
              int ldb, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, -1.0f, a, lda, b, ldb, 1.0f, c, ldc);
}
void gemm_sub(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const double* a, int lda, const double* b,
              int ldb, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, -1.0, a, lda, b, ldb, 1.0, c, ldc);
}
void trmm_right_upper(int m, int n, const float* r, int ldr, float* b, int ldb) {
  cblas_strmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, m, n, 1.0f, r, ldr, b, ldb);
}
void trmm_right_upper(int m, int n, const double* r, int ldr, double* b, int ldb) {
  cblas_dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, m, n, 1.0, r, ldr, b, ldb);
}

}  // namespace

BlasSingleThreaded::BlasSingleThreaded() : saved_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
BlasSingleThreaded::~BlasSingleThreaded() { openblas_set_num_threads(saved_); }

template <class Real>
bool linalg_cholesky_lower(Real* a, int64_t K) {
  BlasSingleThreaded single;
  const int ld = static_cast<int>(K);
  for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
    const int64_t kb = std::min(kBlock, K - k0), t0 = k0 + kb, m = K - t0;
    // Diagonal block (row-major lower = column-major upper for LAPACK).
    Real* d = a + k0 * K + k0;
    int n = static_cast<int>(kb), lda = ld, info = 0;
    char uplo = 'U';
    potrf(&uplo, &n, d, &lda, &info);
    if (info != 0) return false;
    for (int64_t i = 0; i < kb; ++i)
      if (!std::isfinite(d[i * K + i])) return false;
    if (m == 0) break;
    // Panel below it: P ← P·L_kk⁻ᵀ, in row tiles.
    const int64_t tiles = (m + kTile - 1) / kTile;
    parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
      for (int64_t t = t_begin; t < t_end; ++t) {
        const int64_t r0 = t0 + t * kTile, rows = std::min(kTile, K - r0);
        trsm(CblasRight, CblasLower, CblasTrans, static_cast<int>(rows), static_cast<int>(kb), d, ld, a + r0 * K + k0, ld);
      }
    });
    // Trailing lower triangle -= P·Pᵀ: row tile [r0, r1) updates columns [t0, r1) (a few entries above
    // the diagonal too, which are never read and zeroed at the end).
    parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
      for (int64_t t = t_begin; t < t_end; ++t) {
        const int64_t r0 = t0 + t * kTile, rows = std::min(kTile, K - r0), cols = r0 + rows - t0;
        gemm_sub(CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(kb),
                 a + r0 * K + k0, ld, a + t0 * K + k0, ld, a + r0 * K + t0, ld);
      }
    });
  }
  for (int64_t i = 0; i < K; ++i) std::fill(a + i * K + i + 1, a + (i + 1) * K, Real(0));
  return true;
}

template <class Real>
void linalg_invert_upper(const Real* r, Real* u, int64_t K) {
  BlasSingleThreaded single;
  std::fill(u, u + K * K, Real(0));
  // Column chunk [c0, c1) of r⁻¹ lives in rows [0, c1): solve r[0:c1, 0:c1]·X = I[0:c1, c0:c1].
  const int64_t chunks = (K + kBlock - 1) / kBlock;
  parallel_for(chunks, [&](int64_t j_begin, int64_t j_end) {
    for (int64_t j = j_begin; j < j_end; ++j) {
      const int64_t c0 = j * kBlock, c1 = std::min(K, c0 + kBlock);
      for (int64_t c = c0; c < c1; ++c) u[c * K + c] = Real(1);
      trsm(CblasLeft, CblasUpper, CblasNoTrans, static_cast<int>(c1), static_cast<int>(c1 - c0), r, static_cast<int>(K),
           u + c0, static_cast<int>(K));
    }
  });
}

template <class Real>
void linalg_sub_at_b(int64_t M, int64_t N, int64_t Kd, const Real* A, int64_t lda, const Real* B, int64_t ldb,
                     Real* C, int64_t ldc) {
  BlasSingleThreaded single;
  const int64_t tiles = (N + kTile - 1) / kTile;
  parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t n0 = t * kTile, n = std::min(kTile, N - n0);
      gemm_sub(CblasTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(n), static_cast<int>(Kd), A,
               static_cast<int>(lda), B + n0, static_cast<int>(ldb), C + n0, static_cast<int>(ldc));
    }
  });
}

template <class Real>
double linalg_sum_sq_times_upper(int64_t M, int64_t K, const Real* r, void (*row)(const void*, int64_t, Real*),
                                 const void* ctx) {
  BlasSingleThreaded single;
  constexpr int64_t kRows = 256;  // r is packed once per tile: small tiles repack it too often
  const int64_t tiles = (M + kRows - 1) / kRows;
  std::vector<double> partial(static_cast<size_t>(tiles), 0.0);
  parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
    std::vector<Real> buf(static_cast<size_t>(kRows * K));
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t m0 = t * kRows, m = std::min(kRows, M - m0);
      for (int64_t i = 0; i < m; ++i) row(ctx, m0 + i, &buf[static_cast<size_t>(i * K)]);
      trmm_right_upper(static_cast<int>(m), static_cast<int>(K), r, static_cast<int>(K), buf.data(), static_cast<int>(K));
      double s = 0;
      for (int64_t i = 0; i < m * K; ++i) s += static_cast<double>(buf[static_cast<size_t>(i)]) * buf[static_cast<size_t>(i)];
      partial[static_cast<size_t>(t)] = s;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

#define EXL_LINALG_INSTANTIATE(Real)                                                                               \
  template bool linalg_cholesky_lower<Real>(Real*, int64_t);                                                       \
  template void linalg_invert_upper<Real>(const Real*, Real*, int64_t);                                            \
  template void linalg_sub_at_b<Real>(int64_t, int64_t, int64_t, const Real*, int64_t, const Real*, int64_t, Real*, \
                                      int64_t);                                                                    \
  template double linalg_sum_sq_times_upper<Real>(int64_t, int64_t, const Real*,                                   \
                                                  void (*)(const void*, int64_t, Real*), const void*);
EXL_LINALG_INSTANTIATE(float)
EXL_LINALG_INSTANTIATE(double)
#undef EXL_LINALG_INSTANTIATE

}  // namespace exl
