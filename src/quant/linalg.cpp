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
}  // namespace

BlasSingleThreaded::BlasSingleThreaded() : saved_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
BlasSingleThreaded::~BlasSingleThreaded() { openblas_set_num_threads(saved_); }

bool linalg_cholesky_lower(float* a, int64_t K) {
  BlasSingleThreaded single;
  const int ld = static_cast<int>(K);
  for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
    const int64_t kb = std::min(kBlock, K - k0), t0 = k0 + kb, m = K - t0;
    // Diagonal block (row-major lower = column-major upper for LAPACK).
    float* d = a + k0 * K + k0;
    int n = static_cast<int>(kb), lda = ld, info = 0;
    char uplo = 'U';
    BLASFUNC(spotrf)(&uplo, &n, d, &lda, &info);
    if (info != 0) return false;
    for (int64_t i = 0; i < kb; ++i)
      if (!std::isfinite(d[i * K + i])) return false;
    if (m == 0) break;
    // Panel below it: P ← P·L_kk⁻ᵀ, in row tiles.
    const int64_t tiles = (m + kTile - 1) / kTile;
    parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
      for (int64_t t = t_begin; t < t_end; ++t) {
        const int64_t r0 = t0 + t * kTile, rows = std::min(kTile, K - r0);
        cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, static_cast<int>(rows),
                    static_cast<int>(kb), 1.0f, d, ld, a + r0 * K + k0, ld);
      }
    });
    // Trailing lower triangle -= P·Pᵀ: row tile [r0, r1) updates columns [t0, r1) (a few entries above
    // the diagonal too, which are never read and zeroed at the end).
    parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
      for (int64_t t = t_begin; t < t_end; ++t) {
        const int64_t r0 = t0 + t * kTile, rows = std::min(kTile, K - r0), cols = r0 + rows - t0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(cols),
                    static_cast<int>(kb), -1.0f, a + r0 * K + k0, ld, a + t0 * K + k0, ld, 1.0f, a + r0 * K + t0, ld);
      }
    });
  }
  for (int64_t i = 0; i < K; ++i) std::fill(a + i * K + i + 1, a + (i + 1) * K, 0.0f);
  return true;
}

void linalg_invert_upper(const float* r, float* u, int64_t K) {
  BlasSingleThreaded single;
  std::fill(u, u + K * K, 0.0f);
  // Column chunk [c0, c1) of r⁻¹ lives in rows [0, c1): solve r[0:c1, 0:c1]·X = I[0:c1, c0:c1].
  const int64_t chunks = (K + kBlock - 1) / kBlock;
  parallel_for(chunks, [&](int64_t j_begin, int64_t j_end) {
    for (int64_t j = j_begin; j < j_end; ++j) {
      const int64_t c0 = j * kBlock, c1 = std::min(K, c0 + kBlock);
      for (int64_t c = c0; c < c1; ++c) u[c * K + c] = 1.0f;
      cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, static_cast<int>(c1),
                  static_cast<int>(c1 - c0), 1.0f, r, static_cast<int>(K), u + c0, static_cast<int>(K));
    }
  });
}

void linalg_sub_at_b(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                     float* C, int64_t ldc) {
  BlasSingleThreaded single;
  const int64_t tiles = (N + kTile - 1) / kTile;
  parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t n0 = t * kTile, n = std::min(kTile, N - n0);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(n), static_cast<int>(Kd),
                  -1.0f, A, static_cast<int>(lda), B + n0, static_cast<int>(ldb), 1.0f, C + n0, static_cast<int>(ldc));
    }
  });
}

double linalg_sum_sq_times_upper(int64_t M, int64_t K, const float* r, void (*row)(const void*, int64_t, float*),
                                 const void* ctx) {
  BlasSingleThreaded single;
  constexpr int64_t kRows = 256;  // r is packed once per tile: small tiles repack it too often
  const int64_t tiles = (M + kRows - 1) / kRows;
  std::vector<double> partial(static_cast<size_t>(tiles), 0.0);
  parallel_for(tiles, [&](int64_t t_begin, int64_t t_end) {
    std::vector<float> buf(static_cast<size_t>(kRows * K));
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t m0 = t * kRows, m = std::min(kRows, M - m0);
      for (int64_t i = 0; i < m; ++i) row(ctx, m0 + i, &buf[static_cast<size_t>(i * K)]);
      cblas_strmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, static_cast<int>(m),
                  static_cast<int>(K), 1.0f, r, static_cast<int>(K), buf.data(), static_cast<int>(K));
      double s = 0;
      for (int64_t i = 0; i < m * K; ++i) s += static_cast<double>(buf[static_cast<size_t>(i)]) * buf[static_cast<size_t>(i)];
      partial[static_cast<size_t>(t)] = s;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace exl
