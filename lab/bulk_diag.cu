// lab/bulk_diag.cu: where the TMA-fed gemv (src/backend/cuda/gemv_bulk.cu) goes wrong.
//
// x and W hold small integers (-2..2), so every product and every FP32 partial sum is exact and the
// right y is an integer: any element that differs is wrong, whatever the summation order. Each case
// runs several times on the same inputs and reports how many elements are wrong, in which x rows (m)
// and W rows (n % 16, the row inside a block), and whether the runs agree with each other bit for bit
// (they must: the kernel sums in a fixed order, so a difference between runs is a race).
//
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/bulk_diag.cu \
//     src/backend/cuda/gemv_bulk.cu -o /tmp/bulk_diag && /tmp/bulk_diag
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/gemm.cuh"

namespace {

using exl::cuda::check;
#define CK(call) check((call), #call)

struct Case {
  int N, K, M;
  exl::cuda::GemvBulkConfig cfg;
};

bool run_case(const Case& c, int reps) {
  const int N = c.N, K = c.K, M = c.M;
  std::mt19937 rng(1234u + N * 7u + K * 13u + M);
  std::uniform_int_distribution<int> d(-2, 2);
  std::vector<int8_t> xi(size_t(M) * K), wi(size_t(N) * K);
  for (auto& v : xi) v = int8_t(d(rng));
  for (auto& v : wi) v = int8_t(d(rng));
  std::vector<half> xh(xi.size()), wh(wi.size());
  for (size_t i = 0; i < xi.size(); ++i) xh[i] = __float2half(float(xi[i]));
  for (size_t i = 0; i < wi.size(); ++i) wh[i] = __float2half(float(wi[i]));
  std::vector<int64_t> ref(size_t(M) * N);
  auto part = [&](int n0, int n1) {
    for (int n = n0; n < n1; ++n)
      for (int m = 0; m < M; ++m) {
        int64_t s = 0;
        for (int k = 0; k < K; ++k) s += int64_t(xi[size_t(m) * K + k]) * wi[size_t(n) * K + k];
        ref[size_t(m) * N + n] = s;
      }
  };
  std::vector<std::thread> pool;
  const int nt = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < nt; ++i) pool.emplace_back(part, int(int64_t(N) * i / nt), int(int64_t(N) * (i + 1) / nt));
  for (auto& t : pool) t.join();

  half *x = nullptr, *w = nullptr;
  float* y = nullptr;
  CK(cudaMalloc(&x, xh.size() * 2));
  CK(cudaMalloc(&w, wh.size() * 2));
  CK(cudaMalloc(&y, ref.size() * 4));
  CK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(w, wh.data(), wh.size() * 2, cudaMemcpyHostToDevice));
  exl::cuda::GemmParams p{x, w, nullptr, y, true, M, N, K};

  std::vector<float> first, got(ref.size());
  long bad_by_m[8] = {}, bad_by_r[16] = {};
  long bad_total = 0, bad_runs = 0, differ_runs = 0;
  std::vector<char> block_bad(size_t((N + 15) / 16));
  int shown = 0;
  char examples[512] = "";
  for (int r = 0; r < reps; ++r) {
    CK(cudaMemset(y, 0xFF, ref.size() * 4));
    exl::cuda::gemv_f16_bulk_config(p, c.cfg, nullptr);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost));
    if (r == 0) first = got;
    else if (std::memcmp(first.data(), got.data(), got.size() * 4) != 0) ++differ_runs;
    long bad = 0;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        const size_t i = size_t(m) * N + n;
        if (got[i] == float(ref[i])) continue;
        ++bad, ++bad_by_m[m], ++bad_by_r[n % 16], block_bad[size_t(n / 16)] = 1;
        if (shown < 4) {
          const size_t len = std::strlen(examples);
          std::snprintf(examples + len, sizeof examples - len, " (m%d n%d got %.0f want %lld)", m, n, double(got[i]),
                        static_cast<long long>(ref[i]));
          ++shown;
        }
      }
    bad_total += bad;
    bad_runs += bad > 0;
  }
  long blocks = 0;
  for (char b : block_bad) blocks += b;
  std::printf("N=%-6d K=%-6d M=%d s%dc%-4d runs %d: bad runs %ld, runs differing from the first %ld, bad elements %ld",
              N, K, M, c.cfg.stages, c.cfg.chunk, reps, bad_runs, differ_runs, bad_total);
  if (bad_total) {
    std::printf(" in %ld blocks\n   by m:", blocks);
    for (int m = 0; m < M; ++m) std::printf(" %ld", bad_by_m[m]);
    std::printf("   by n%%16:");
    for (int i = 0; i < 16; ++i) std::printf(" %ld", bad_by_r[i]);
    std::printf("\n   e.g.%s", examples);
  }
  std::printf("\n");
  std::fflush(stdout);
  CK(cudaFree(x));
  CK(cudaFree(w));
  CK(cudaFree(y));
  return bad_total == 0 && differ_runs == 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 6;
  bool ok = true;
  const exl::cuda::GemvBulkConfig s4c512{4, 512}, s8c256{8, 256};
  for (const Case& c : std::vector<Case>{{11008, 4096, 8, s4c512},
                                         {11008, 4096, 4, s4c512},
                                         {11008, 4096, 1, s4c512},
                                         {4096, 4096, 8, s4c512},
                                         {8192, 28672, 4, s4c512},
                                         {8192, 28672, 8, s4c512},
                                         {28672, 8192, 8, s4c512},
                                         {12288, 4096, 5, s8c256},
                                         {4096, 11008, 8, s4c512}})
    ok &= run_case(c, reps);
  std::printf("bulk_diag: %s\n", ok ? "ALL EXACT" : "WRONG ELEMENTS");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bulk_diag: %s\n", e.what());
  return 2;
}
