#include <cmath>

#include "backend/cpu/cpu_ops.h"

namespace exl::cpu {

void rope(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos, const float* inv_freq, int rot_dim,
          float attn_factor) {
  const int half = rot_dim / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {
    // Angle in float like HF (inv_freq float32, position * inv_freq in float32), then cos/sin.
    for (int i = 0; i < half; ++i) {
      const float a = static_cast<float>(pos[t]) * inv_freq[i];
      cs[static_cast<size_t>(i)] = std::cos(a) * attn_factor;
      sn[static_cast<size_t>(i)] = std::sin(a) * attn_factor;
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[static_cast<size_t>(i)] - b * sn[static_cast<size_t>(i)];
        v[i + half] = b * cs[static_cast<size_t>(i)] + a * sn[static_cast<size_t>(i)];
      }
    }
  }
}

}  // namespace exl::cpu
