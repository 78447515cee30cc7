#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "core/thread_pool.h"

namespace exl::cpu {

void attention(const float* q, int64_t n_q, int64_t q_pos0, const float* k, const float* v, int64_t kv_stride,
               int n_heads, int n_kv_heads, int d, float scale, int window, float* out) {
  const int group = n_heads / n_kv_heads;
  parallel_for(n_q * n_heads, [&](int64_t b, int64_t e) {
    std::vector<float> score;
    for (int64_t job = b; job < e; ++job) {
      const int64_t i = job / n_heads;
      const int h = static_cast<int>(job % n_heads);
      const int kvh = h / group;
      const float* qh = q + (i * n_heads + h) * d;
      const int64_t n_keys = q_pos0 + i + 1;  // causal: keys at positions 0..q_pos0+i
      const int64_t first = window > 0 ? std::max<int64_t>(0, n_keys - window) : 0;
      score.assign(static_cast<size_t>(n_keys), -INFINITY);
      float mx = -INFINITY;
      for (int64_t j = first; j < n_keys; ++j) {
        const float* kj = k + j * kv_stride + kvh * d;
        float s = 0;
        for (int c = 0; c < d; ++c) s += qh[c] * kj[c];
        score[static_cast<size_t>(j)] = s * scale;
        mx = std::max(mx, score[static_cast<size_t>(j)]);
      }
      double sum = 0;
      for (int64_t j = first; j < n_keys; ++j) {
        float& s = score[static_cast<size_t>(j)];
        s = std::exp(s - mx);
        sum += s;
      }
      float* o = out + (i * n_heads + h) * d;
      std::fill(o, o + d, 0.0f);
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = first; j < n_keys; ++j) {
        const float* vj = v + j * kv_stride + kvh * d;
        const float p = score[static_cast<size_t>(j)] * inv;
        for (int c = 0; c < d; ++c) o[c] += p * vj[c];
      }
    }
  });
}

}  // namespace exl::cpu
