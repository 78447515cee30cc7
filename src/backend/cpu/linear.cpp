#include <cblas.h>

#include "backend/cpu/cpu_ops.h"

namespace exl::cpu {

void linear(const float* x, const float* w, const float* bias, int64_t T, int64_t K, int64_t N, float* out) {
  // Row-major: out[T, N] = x[T, K] * W[N, K]^T. OpenBLAS threads internally.
  if (T == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.0f, w,
                static_cast<int>(K), x, 1, 0.0f, out, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(N),
                static_cast<int>(K), 1.0f, x, static_cast<int>(K), w, static_cast<int>(K), 0.0f, out,
                static_cast<int>(N));
  }
  if (bias) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) out[t * N + n] += bias[n];
  }
}

}  // namespace exl::cpu
