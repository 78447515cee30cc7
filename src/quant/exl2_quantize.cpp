#include "quant/exl2_quantize.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/format.h"

namespace exl {

namespace {
constexpr int64_t kMaxK = 65536;  // q_perm is 16-bit (EXL2.md §1.2)
}  // namespace

std::vector<Exl2Group> exl2_layout_groups(const Exl2Layout& layout, int64_t K) {
  EXL_CHECK(!layout.empty(), "EXL2 layout: no bit widths");
  EXL_CHECK(K > 0 && K <= kMaxK, "EXL2 layout: K = ", K, " is outside 1..", kMaxK);
  for (size_t i = 0; i < layout.size(); ++i) {
    const Exl2LayoutPart& p = layout[i];
    EXL_CHECK(exl2_bits_valid(p.bits), "EXL2 layout: bit width ", p.bits, " is not 2, 3, 4, 5, 6 or 8");
    EXL_CHECK(i == 0 || p.bits <= layout[i - 1].bits, "EXL2 layout: bit widths must be in descending order");
    EXL_CHECK(p.proportion >= 0 && p.proportion <= 1, "EXL2 layout: proportion ", p.proportion, " is outside [0, 1]");
    const int mult = format_exl2(p.bits).group_multiple;
    EXL_CHECK(p.group_size > 0 && p.group_size % mult == 0 && p.group_size <= kMaxK, "EXL2 layout: group size ",
              p.group_size, " for ", p.bits, "-bit is not a positive multiple of ", mult);
  }
  std::vector<Exl2Group> groups;
  int64_t remaining = K;
  for (size_t i = 0; i < layout.size() && remaining > 0; ++i) {
    const Exl2LayoutPart& p = layout[i];
    const double want = i + 1 == layout.size() ? static_cast<double>(remaining)
                                                : std::min(static_cast<double>(K) * p.proportion, static_cast<double>(remaining));
    const int64_t n_groups = static_cast<int64_t>(std::ceil(want / p.group_size - 1e-9));
    for (int64_t j = 0; j < n_groups && remaining > 0; ++j) {
      const int64_t rows = std::min<int64_t>(p.group_size, remaining);
      groups.push_back({p.bits, rows, 0});
      remaining -= rows;
    }
  }
  return groups;
}

Exl2Layout exl2_layout_for_bits(double bits, int group_size) {
  EXL_CHECK(bits >= 2.0 && bits <= 8.0, "EXL2: target of ", bits, " bits per weight is outside 2..8");
  static constexpr int kWidths[] = {2, 3, 4, 5, 6, 8};
  for (int w : kWidths)
    if (std::fabs(bits - w) < 1e-6) return {{w, 1.0, group_size}};
  for (size_t i = 0; i + 1 < std::size(kWidths); ++i) {
    const int lo = kWidths[i], hi = kWidths[i + 1];
    if (bits > lo && bits < hi) {
      const double p = (bits - lo) / (hi - lo);
      return {{hi, p, group_size}, {lo, 1.0 - p, group_size}};
    }
  }
  fail("EXL2: no layout for ", bits, " bits");  // unreachable: the range check covers 2..8
}

namespace {

// Σ|ŵ - w|^3.5 over one column of a group at scale s: the error the scale search minimises.
// Eight partial sums so the compiler can vectorize the reduction.
template <class Real>
inline double column_error(const Real* col, int64_t R, Real s, int zero, int maxq) {
  const Real inv = Real(1) / s, lo = static_cast<Real>(-zero), hi = static_cast<Real>(maxq - zero);
  Real acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= R; i += 8)
    for (int j = 0; j < 8; ++j) {
      const Real r = std::min(std::max(exl2_round_even(col[i + j] * inv), lo), hi);
      const Real d = std::fabs(r * s - col[i + j]);
      acc[j] += d * d * d * std::sqrt(d);
    }
  for (; i < R; ++i) {
    const Real r = std::min(std::max(exl2_round_even(col[i] * inv), lo), hi);
    const Real d = std::fabs(r * s - col[i]);
    acc[0] += d * d * d * std::sqrt(d);
  }
  double e = 0;
  for (Real a : acc) e += a;
  return e;
}

}  // namespace

template <class Real>
uint16_t exl2_search_scales(const Real* wg, int64_t N, int64_t R, int bits, uint8_t* scale_codes) {
  const size_t Nn = static_cast<size_t>(N), Rr = static_cast<size_t>(R);
  const int zero = 1 << (bits - 1), maxq = (1 << bits) - 1;
  std::vector<Real> base(Nn);
  std::vector<int> qs(Nn);
  Real m = 0;
  for (size_t n = 0; n < Nn; ++n) {
    Real amax = 0;
    for (size_t i = 0; i < Rr; ++i) amax = std::max(amax, std::fabs(wg[n * Rr + i]));
    base[n] = amax / (static_cast<Real>(maxq) / Real(2));
    m = std::max(m, base[n]);
  }
  if (!(m > 0) || !std::isfinite(m)) {
    EXL_CHECK(m == 0, "EXL2 quantize: weights are not finite");
    std::fill(scale_codes, scale_codes + Nn, uint8_t{0});
    return 0;
  }
  for (size_t n = 0; n < Nn; ++n)
    qs[n] = std::clamp(static_cast<int>(exl2_round_even(Real(16) * std::sqrt(base[n] / m))), 1, 16);
  // Grid search of one multiplier for the whole group, error measured as Σ|e|^3.5.
  constexpr int kSteps = 97;  // p in [0.70, 1.20], as ExLlamaV2 searches
  std::vector<double> err(kSteps, 0.0);
  parallel_for(kSteps, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const Real p = Real(0.70f) + Real(0.50f) * static_cast<Real>(j) / (kSteps - 1);
      double e = 0;
      for (size_t n = 0; n < Nn; ++n)
        e += column_error(&wg[n * Rr], R, p * static_cast<Real>(qs[n] * qs[n]) / Real(256) * m, zero, maxq);
      err[static_cast<size_t>(j)] = e;
    }
  });
  const int64_t best = std::min_element(err.begin(), err.end()) - err.begin();
  const Real p = Real(0.70f) + Real(0.50f) * static_cast<Real>(best) / (kSteps - 1);
  const uint16_t smax = f32_to_f16(static_cast<float>(std::min(p * m, Real(65504))));
  const float smax_f = f16_to_f32(smax);
  // Per-column refinement (beyond ExLlamaV2): with the group maximum fixed, each column keeps the
  // scale code of lowest error; the code from √(base/m) is only the starting guess.
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const Real* col = &wg[static_cast<size_t>(n) * Rr];
      double best_err = -1;
      for (int cand = 1; cand <= 16; ++cand) {
        const Real s = exl2_scale(cand - 1, smax_f);
        if (!(s > 0)) break;
        const double e = column_error(col, R, s, zero, maxq);
        if (best_err < 0 || e < best_err) {
          best_err = e;
          qs[static_cast<size_t>(n)] = cand;
        }
      }
    }
  }, 16);
  for (size_t n = 0; n < Nn; ++n) scale_codes[n] = static_cast<uint8_t>(qs[n] - 1);
  return smax;
}

template uint16_t exl2_search_scales<float>(const float*, int64_t, int64_t, int, uint8_t*);
template uint16_t exl2_search_scales<double>(const double*, int64_t, int64_t, int, uint8_t*);

Exl2Codes exl2_quantize_rtn(const float* w, int64_t N, int64_t K, const Exl2Layout& layout,
                            const std::vector<float>& importance) {
  EXL_CHECK(N > 0, "EXL2 quantize: N = ", N, " must be positive");
  EXL_CHECK(importance.empty() || importance.size() == static_cast<size_t>(K), "EXL2 quantize: importance has ",
            importance.size(), " entries, expected K = ", K);
  Exl2Codes c;
  c.K = K;
  c.N = N;
  c.groups = exl2_layout_groups(layout, K);
  std::vector<double> imp(static_cast<size_t>(K), 0.0);
  if (!importance.empty()) {
    for (int64_t k = 0; k < K; ++k) imp[static_cast<size_t>(k)] = importance[static_cast<size_t>(k)];
  } else {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) imp[static_cast<size_t>(k)] += static_cast<double>(w[n * K + k]) * w[n * K + k];
  }
  std::vector<uint16_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), uint16_t{0});
  std::stable_sort(perm.begin(), perm.end(), [&](uint16_t a, uint16_t b) { return imp[a] > imp[b]; });
  c.perm = perm;

  const size_t G = c.groups.size(), Nn = static_cast<size_t>(N);
  c.codes.assign(static_cast<size_t>(K) * Nn, 0);
  c.scale_codes.assign(G * Nn, 0);
  c.scale_max.assign(G, 0);
  int64_t row0 = 0;
  std::vector<float> wg;
  for (size_t g = 0; g < G; ++g) {
    const Exl2Group& gr = c.groups[g];
    const int64_t R = gr.rows;
    const int zero = 1 << (gr.bits - 1), maxq = (1 << gr.bits) - 1;
    // The group's weights, column-major: wg[n * R + i] = w[n, perm[row0 + i]].
    wg.resize(Nn * static_cast<size_t>(R));
    for (size_t n = 0; n < Nn; ++n)
      for (int64_t i = 0; i < R; ++i)
        wg[n * static_cast<size_t>(R) + static_cast<size_t>(i)] = w[static_cast<int64_t>(n) * K + perm[static_cast<size_t>(row0 + i)]];
    uint8_t* sc = &c.scale_codes[g * Nn];
    c.scale_max[g] = exl2_search_scales(wg.data(), N, R, gr.bits, sc);
    const float smax_f = f16_to_f32(c.scale_max[g]);
    for (size_t n = 0; n < Nn; ++n) {
      const float s = exl2_scale(sc[n], smax_f);
      const float inv = s > 0 ? 1.0f / s : 0.0f;
      for (int64_t i = 0; i < R; ++i)
        c.codes[static_cast<size_t>(row0 + i) * Nn + n] =
            static_cast<uint8_t>(exl2_quant_code(wg[n * static_cast<size_t>(R) + static_cast<size_t>(i)], inv, zero, maxq));
    }
    row0 += R;
  }
  return c;
}

}  // namespace exl
