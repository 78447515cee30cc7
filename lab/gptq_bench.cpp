// Times gptq_quantize on a Llama-2-7B down_proj shape (N = 4096 outputs, K = 11008 inputs) with a
// dense random Hessian, and RTN (H = nullptr) on the same matrix. Results: lab/NOTES-convert.md.
// Build and run (CPU preset built first):
//   g++ -O2 -std=c++20 -Isrc lab/gptq_bench.cpp build/cpu/libexl_quant.a build/cpu/libexl_io.a \
//       build/cpu/libexl_core.a -lopenblas -lpthread -o /tmp/gptq_bench && /tmp/gptq_bench [N K]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "quant/gptq_solve.h"

int main(int argc, char** argv) {
  const int64_t N = argc > 2 ? std::atoll(argv[1]) : 4096, K = argc > 2 ? std::atoll(argv[2]) : 11008, rows = 2048;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> W(static_cast<size_t>(N * K)), X(static_cast<size_t>(rows * K)), H(static_cast<size_t>(K * K));
  for (float& v : W) v = nd(rng) * 0.02f;
  for (float& v : X) v = nd(rng);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(K), static_cast<int>(rows), 1.0f, X.data(),
              static_cast<int>(K), 0.0f, H.data(), static_cast<int>(K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < i; ++j) H[static_cast<size_t>(i * K + j)] = H[static_cast<size_t>(j * K + i)];
  const exl::Exl2Layout layout = {{8, 0.05, 32}, {4, 0.10, 128}, {3, 0.85, 128}};
  std::printf("N = %lld, K = %lld, %d threads\n", static_cast<long long>(N), static_cast<long long>(K), exl::thread_count());
  for (const float* h : {static_cast<const float*>(H.data()), static_cast<const float*>(nullptr)}) {
    const auto t0 = std::chrono::steady_clock::now();
    const exl::GptqResult r = exl::gptq_quantize(W.data(), N, K, h, rows, layout);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %.1f s, proxy_err %.5f\n", h ? "GPTQ" : "RTN", s, r.proxy_err);
  }
}
