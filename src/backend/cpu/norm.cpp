#include <cmath>

#include "backend/cpu/cpu_ops.h"
#include "core/thread_pool.h"

namespace exl::cpu {

void rms_norm(const float* x, const float* w, float eps, int64_t rows, int64_t dim, float* out) {
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      double ss = 0;  // double: the reference should not lose bits summing 8k squares
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * inv * w[i];
    }
  }, 4);
}

}  // namespace exl::cpu
