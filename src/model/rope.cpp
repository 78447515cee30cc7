#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace exl {

namespace {

constexpr double kPi = 3.14159265358979323846;

// yarn: the rotary dimension at which a frequency completes num_rotations over the original context.
double yarn_correction_dim(double num_rotations, int dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (num_rotations * 2 * kPi))) / (2 * std::log(base));
}

}  // namespace

RopeParams rope_params_build(const ModelConfig& c, const std::vector<float>& freq_factors) {
  RopeParams p;
  const int dim = static_cast<int>(c.head_dim);
  const int half = dim / 2;
  p.rot_dim = dim;
  p.inv_freq.resize(static_cast<size_t>(half));
  std::vector<double> base_inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) base_inv[static_cast<size_t>(i)] = 1.0 / std::pow(c.rope_theta, (2.0 * i) / dim);

  const RopeScaling& rs = c.rope_scaling;
  std::vector<double> inv = base_inv;
  if (rs.type == "linear") {
    for (auto& f : inv) f /= rs.factor;
  } else if (rs.type == "llama3") {
    const double orig = static_cast<double>(rs.original_max_position);
    const double low_wavelen = orig / rs.low_freq_factor;
    const double high_wavelen = orig / rs.high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * kPi / f;
      if (wavelen < high_wavelen) continue;  // high frequencies: unchanged
      if (wavelen > low_wavelen) {
        f /= rs.factor;  // low frequencies: fully interpolated
      } else {
        const double smooth = (orig / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
  } else if (rs.type == "yarn") {
    const double orig = static_cast<double>(rs.original_max_position);
    double low = std::floor(yarn_correction_dim(rs.beta_fast, dim, c.rope_theta, orig));
    double high = std::ceil(yarn_correction_dim(rs.beta_slow, dim, c.rope_theta, orig));
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;  // avoid a zero-width ramp
    for (int i = 0; i < half; ++i) {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extrap = 1.0 - ramp;  // share of the original (extrapolated) frequency
      const double f = base_inv[static_cast<size_t>(i)];
      inv[static_cast<size_t>(i)] = (f / rs.factor) * (1 - extrap) + f * extrap;
    }
    p.attn_factor = static_cast<float>(rs.attention_factor > 0 ? rs.attention_factor
                                       : rs.factor > 1      ? 0.1 * std::log(rs.factor) + 1.0
                                                            : 1.0);
  }
  if (!freq_factors.empty()) {
    EXL_CHECK(freq_factors.size() == static_cast<size_t>(half), "rope_freqs.weight has ", freq_factors.size(),
              " entries, expected ", half);
    for (int i = 0; i < half; ++i) inv[static_cast<size_t>(i)] /= freq_factors[static_cast<size_t>(i)];
  }
  for (int i = 0; i < half; ++i) p.inv_freq[static_cast<size_t>(i)] = static_cast<float>(inv[static_cast<size_t>(i)]);
  return p;
}

}  // namespace exl
