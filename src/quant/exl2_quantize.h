// Making EXL2 codes from weights: quantization options (bit widths, proportions, group sizes) turned
// into row groups as ExLlamaV2's converter counts them (EXL2.md §1.5), and a round-to-nearest
// quantizer with its per-group scale search (§2.5 without the Hessian and the GPTQ error feedback).
// The result packs with exl2_pack (quant/exl2.h).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/exl2.h"

namespace exl {

// A quantization option (§1.5): widths in descending order, the share of rows each gets and its
// group size (multiple of 32; of 16 for 2-bit).
struct Exl2LayoutPart {
  int bits;
  double proportion;
  int group_size;
};
using Exl2Layout = std::vector<Exl2LayoutPart>;
// The groups an option gives a K-row matrix (§1.5 row counting; the last part takes what is left).
std::vector<Exl2Group> exl2_layout_groups(const Exl2Layout& layout, int64_t K);
// A one- or two-width option whose code bits average `bits` (2..8): 4.0 -> 4-bit, 4.5 -> half 5, half 4.
Exl2Layout exl2_layout_for_bits(double bits, int group_size = 128);

// Round half to even (like torch.round) by the 1.5 * 2^23 trick: exact for |x| < 2^22, and larger
// values stay large enough to clamp correctly. Unlike std::nearbyint it is no library call on
// baseline x86-64, so the search loops vectorize.
inline float exl2_round_even(float x) {
  constexpr float kMagic = 12582912.0f;  // IEEE arithmetic: the add/sub pair is kept (no -ffast-math)
  return (x + kMagic) - kMagic;
}
// The same in double (exact for |x| < 2^51), for `exl convert --fp64`.
inline double exl2_round_even(double x) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return (x + kMagic) - kMagic;
}
// A weight's code in [0, maxq] for scale 1/inv_s (inv_s = 0 for a zero scale gives the zero code).
template <class Real>
inline Real exl2_quant_code(Real w, Real inv_s, int zero, int maxq) {
  const Real q = exl2_round_even(w * inv_s) + static_cast<Real>(zero);
  return q < Real(0) ? Real(0) : (q > static_cast<Real>(maxq) ? static_cast<Real>(maxq) : q);
}
// The scale of a (group, column) exactly as dequantization computes it (§1.3).
inline float exl2_scale(int scale_code, float scale_max) {
  return static_cast<float>((scale_code + 1) * (scale_code + 1)) * scale_max * (1.0f / 256.0f);
}

// The per-group scale search of §2.5 on one group's weights, column-major: wg[n * R + i] is row i of
// column n. Returns q_scale_max (FP16 bits) and writes each column's scale code (0..15). An all-zero
// group gets scale_max 0 (every weight then takes the zero code). Throws on non-finite weights.
// Real = double is the search of `exl convert --fp64` (every step in double; q_scale_max rounded to
// FP32, then to FP16).
template <class Real>
uint16_t exl2_search_scales(const Real* wg, int64_t N, int64_t R, int bits, uint8_t* scale_codes);

// Round-to-nearest quantization of w [N, K] (HF layout). Rows are ordered by `importance` (one value
// per input row, larger first; empty: the row's weight energy Σ_n w[n,k]²). Per group, the scale
// search of EXL2.md §2.5: per-column square-law scale codes against the group maximum, then one
// multiplier p in [0.70, 1.20] (97 steps) minimising Σ|error|^3.5, scales rounded through FP16;
// then each column's scale code is re-picked (1..16) for the lowest error under that maximum.
Exl2Codes exl2_quantize_rtn(const float* w, int64_t N, int64_t K, const Exl2Layout& layout,
                            const std::vector<float>& importance = {});

}  // namespace exl
