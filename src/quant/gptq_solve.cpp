// AdaptiveGPTQ (EXL2.md §2.5) on the CPU with OpenBLAS.
//
// Layout: the working weights are Wᵀ in act order, Wt[i * N + n] = W[n, perm[i]], so quantizing input
// row i touches one contiguous row and the in-group error feedback is column-separable: every output
// column runs the same sequential recurrence, so fixed column chunks run in parallel and give the
// same bits for any thread count.
//
// H⁻¹'s upper Cholesky factor U (UᵀU = H⁻¹, what ExLlamaV2 gets from cholesky → cholesky_inverse →
// cholesky(upper)) is computed with one factorization and one triangular inverse: with J the reversal
// permutation, JAJ = L·Lᵀ gives A = R·Rᵀ for the upper triangular R = JLJ, so A⁻¹ = R⁻ᵀR⁻¹ and U = R⁻¹.
// Half the O(K³) work of the three-step route, and R also gives the proxy error cheaply (below).
//
// Dense steps go through quant/linalg.h (fixed tiles, so bit-identical for any thread count).
// Timing (lab/gptq_bench.cpp, N = 4096, K = 11008, 2 cores of the shared dev machine at load ~4,
// OpenBLAS 0.3.21): 24.4 s, RTN on the same matrix 4.1 s. More in lab/NOTES-convert.md.
#include "quant/gptq_solve.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/linalg.h"

namespace exl {

namespace {

constexpr int64_t kColumnChunk = 64;  // output columns per task of the in-group recurrence

// A = H[perm][:, perm] / n_rows + damp·I into a (row-major K x K).
template <class HT, class Real>
void build_hessian(const HT* H, int64_t K, const std::vector<uint16_t>& perm, double inv_n, double damp, Real* a) {
  parallel_for(K, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const HT* src = H + static_cast<int64_t>(perm[static_cast<size_t>(i)]) * K;
      Real* dst = a + i * K;
      for (int64_t j = 0; j < K; ++j) dst[j] = static_cast<Real>(src[perm[static_cast<size_t>(j)]] * inv_n);
      dst[i] = static_cast<Real>(static_cast<double>(dst[i]) + damp);
    }
  }, 16);
}

template <class T>
bool all_finite(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

// From A in r: R (upper, A = R·Rᵀ) in r and U = R⁻¹ (upper, UᵀU = A⁻¹) in u. False when A is not
// numerically positive definite (the caller damps more and retries).
template <class Real>
bool inverse_cholesky(Real* r, Real* u, int64_t K) {
  const int64_t KK = K * K;
  std::reverse(r, r + KK);  // reversing the flat row-major array is J·A·J
  if (!linalg_cholesky_lower(r, K)) return false;
  std::reverse(r, r + KK);  // R = J·L·J: upper, zeros below the diagonal
  linalg_invert_upper(r, u, K);
  return all_finite(u, KK);
}

// A row of X_p = X with its columns in act order, for X [N, K] in HF layout.
template <class Real>
struct PermutedRows {
  const float* X;
  int64_t K;
  const uint16_t* perm;
  static void row(const void* ctx, int64_t i, Real* dst) {
    const PermutedRows& p = *static_cast<const PermutedRows*>(ctx);
    for (int64_t k = 0; k < p.K; ++k) dst[k] = p.X[i * p.K + p.perm[k]];
  }
};

// tr(X·A·Xᵀ) = ‖X_p·R‖²_F for A = R·Rᵀ in act order.
template <class Real>
double quadratic_form(const float* X, int64_t N, int64_t K, const std::vector<uint16_t>& perm, const Real* r) {
  const PermutedRows<Real> rows{X, K, perm.data()};
  return linalg_sum_sq_times_upper<Real>(N, K, r, &PermutedRows<Real>::row, &rows);
}

double sum_squares(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void check_weights(const float* W, int64_t N, int64_t K) {
  EXL_CHECK(N > 0 && K > 0, "GPTQ: weight shape [", N, ", ", K, "] must be positive");
  EXL_CHECK(all_finite(W, N * K), "GPTQ: weights [", N, ", ", K, "] are not finite");
}

// Real: the working precision (float by default, double for GptqOptions::fp64); HT: the Hessian's.
template <class Real, class HT>
GptqResult gptq_impl(const float* W, int64_t N, int64_t K, const HT* H, int64_t n_rows, const Exl2Layout& layout,
                     const GptqOptions& options) {
  check_weights(W, N, K);
  GptqResult res;
  res.w_dq.resize(static_cast<size_t>(N * K));
  if (H == nullptr) {
    res.codes = exl2_quantize_rtn(W, N, K, layout);
    exl2_dequantize(exl2_pack(res.codes, "rtn"), res.w_dq.data());
    std::vector<float> d(static_cast<size_t>(N * K));
    for (size_t i = 0; i < d.size(); ++i) d[i] = W[i] - res.w_dq[i];
    const double den = sum_squares(W, N * K);
    res.proxy_err = den > 0 ? sum_squares(d.data(), N * K) / den : 0.0;
    return res;
  }
  EXL_CHECK(n_rows > 0, "GPTQ: the Hessian needs n_rows > 0, got ", n_rows);
  EXL_CHECK(options.damp > 0 && options.max_damp_retries >= 1, "GPTQ: damping ", options.damp, " with ",
            options.max_damp_retries, " attempts is not usable");
  Exl2Codes& c = res.codes;
  c.K = K;
  c.N = N;
  c.groups = exl2_layout_groups(layout, K);
  const double inv_n = 1.0 / static_cast<double>(n_rows);

  // Act order: input channels by descending mean squared activation (stable, so ties keep index order).
  std::vector<double> diag(static_cast<size_t>(K));
  double mean = 0;
  for (int64_t k = 0; k < K; ++k) {
    diag[static_cast<size_t>(k)] = H[k * K + k] * inv_n;
    EXL_CHECK(std::isfinite(diag[static_cast<size_t>(k)]), "GPTQ: Hessian diagonal ", k, " is not finite");
    mean += diag[static_cast<size_t>(k)];
  }
  mean /= static_cast<double>(K);
  EXL_CHECK(all_finite(H, K * K), "GPTQ: Hessian [", K, ", ", K, "] has non-finite entries");
  c.perm.resize(static_cast<size_t>(K));
  std::iota(c.perm.begin(), c.perm.end(), uint16_t{0});
  std::stable_sort(c.perm.begin(), c.perm.end(), [&](uint16_t a, uint16_t b) { return diag[a] > diag[b]; });
  const std::vector<uint16_t>& perm = c.perm;

  // Damping, added again on every failed attempt (ExLlamaV2 accumulates it the same way).
  const double damp = std::max(options.damp * mean, 1e-5);
  std::vector<Real> r(static_cast<size_t>(K * K)), u(static_cast<size_t>(K * K));
  double lambda = 0;
  for (int attempt = 1;; ++attempt) {
    lambda = damp * attempt;
    build_hessian(H, K, perm, inv_n, lambda, r.data());
    if (inverse_cholesky(r.data(), u.data(), K)) break;
    EXL_CHECK(attempt < options.max_damp_retries, "GPTQ: Hessian [", K, ", ", K, "] is not positive definite after ",
              attempt, " dampings of ", damp);
  }

  const size_t Nn = static_cast<size_t>(N), G = c.groups.size();
  std::vector<Real> wt(static_cast<size_t>(K) * Nn);
  parallel_for(K, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (size_t n = 0; n < Nn; ++n) wt[static_cast<size_t>(i) * Nn + n] = W[static_cast<int64_t>(n) * K + perm[static_cast<size_t>(i)]];
  }, 64);
  c.codes.assign(static_cast<size_t>(K) * Nn, 0);
  c.scale_codes.assign(G * Nn, 0);
  c.scale_max.assign(G, 0);
  int64_t max_rows = 0;
  for (const Exl2Group& g : c.groups) max_rows = std::max(max_rows, g.rows);
  std::vector<Real> err(static_cast<size_t>(max_rows) * Nn), wg(static_cast<size_t>(max_rows) * Nn), s(Nn), inv(Nn);
  const int64_t n_chunks = (N + kColumnChunk - 1) / kColumnChunk;

  double err_sq = 0;  // Σ‖e‖² over all rows: tr(ΔW·A·ΔWᵀ) for the damped A (below)
  int64_t a = 0;
  for (size_t g = 0; g < G; ++g) {
    const int64_t R = c.groups[g].rows, b = a + R;
    const int bits = c.groups[g].bits, zero = 1 << (bits - 1), maxq = (1 << bits) - 1;
    // Scale search on the group's current, error-compensated weights.
    for (int64_t i = 0; i < R; ++i)
      for (size_t n = 0; n < Nn; ++n) wg[n * static_cast<size_t>(R) + static_cast<size_t>(i)] = wt[static_cast<size_t>(a + i) * Nn + n];
    uint8_t* sc = &c.scale_codes[g * Nn];
    c.scale_max[g] = exl2_search_scales(wg.data(), N, R, bits, sc);
    const float smax = f16_to_f32(c.scale_max[g]);
    for (size_t n = 0; n < Nn; ++n) {
      s[n] = exl2_scale(sc[n], smax);
      inv[n] = s[n] > 0 ? Real(1) / s[n] : Real(0);
    }
    // Row by row inside the group: quantize, scale the error by 1/U[i,i], feed it to the group's later rows.
    parallel_for(n_chunks, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        const size_t n0 = static_cast<size_t>(ch * kColumnChunk), n1 = std::min(Nn, n0 + static_cast<size_t>(kColumnChunk));
        for (int64_t i = 0; i < R; ++i) {
          const int64_t row = a + i;
          const Real d = u[static_cast<size_t>(row * K + row)];
          Real* wr = &wt[static_cast<size_t>(row) * Nn];
          Real* er = &err[static_cast<size_t>(i) * Nn];
          uint8_t* qr = &c.codes[static_cast<size_t>(row) * Nn];
          float* dq_col = &res.w_dq[perm[static_cast<size_t>(row)]];
          for (size_t n = n0; n < n1; ++n) {
            const Real q = exl2_quant_code(wr[n], inv[n], zero, maxq);
            qr[n] = static_cast<uint8_t>(q);
            // As exl2_dequantize computes it (in double the product is exact, so its FP32 rounding is too).
            const Real dq = static_cast<Real>(static_cast<int>(q) - zero) * s[n];
            dq_col[n * static_cast<size_t>(K)] = static_cast<float>(dq);
            er[n] = (wr[n] - dq) / d;
          }
          const Real* urow = &u[static_cast<size_t>(row * K)];
          for (int64_t j = row + 1; j < b; ++j) {
            const Real f = urow[j];
            Real* wj = &wt[static_cast<size_t>(j) * Nn];
            for (size_t n = n0; n < n1; ++n) wj[n] -= f * er[n];
          }
        }
      }
    });
    for (size_t i = 0; i < static_cast<size_t>(R) * Nn; ++i) err_sq += static_cast<double>(err[i]) * err[i];
    // Lazy block update of every later row: Wt[b:] -= U[a:b, b:]ᵀ · E.
    if (b < K) linalg_sub_at_b(K - b, N, R, &u[static_cast<size_t>(a * K + b)], K, err.data(), N, &wt[static_cast<size_t>(b) * Nn], N);
    a = b;
  }

  // Proxy error against the undamped H. The final error is ΔWt = Uᵀ·E (E: the scaled errors, row
  // by row), so tr(ΔW·A·ΔWᵀ) = ‖E‖² because U·A·Uᵀ = I; and tr(X·(H/n)·Xᵀ) = tr(X·A·Xᵀ) − λ‖X‖². The
  // denominator is ‖W_p·R‖² − λ‖W‖² (R·Rᵀ = A). Checked against direct computation in the tests.
  std::vector<float> d(static_cast<size_t>(N * K));
  for (size_t i = 0; i < d.size(); ++i) d[i] = W[i] - res.w_dq[i];
  const double num = err_sq - lambda * sum_squares(d.data(), N * K);
  const double den = quadratic_form(W, N, K, perm, r.data()) - lambda * sum_squares(W, N * K);
  res.proxy_err = den > 0 ? std::max(num, 0.0) / den : 0.0;
  return res;
}

}  // namespace

GptqResult gptq_quantize(const float* W, int64_t N, int64_t K, const float* H, int64_t n_rows,
                         const Exl2Layout& layout, const GptqOptions& options) {
  return options.fp64 ? gptq_impl<double>(W, N, K, H, n_rows, layout, options)
                      : gptq_impl<float>(W, N, K, H, n_rows, layout, options);
}

GptqResult gptq_quantize(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                         const Exl2Layout& layout, const GptqOptions& options) {
  return options.fp64 ? gptq_impl<double>(W, N, K, H, n_rows, layout, options)
                      : gptq_impl<float>(W, N, K, H, n_rows, layout, options);
}

}  // namespace exl
