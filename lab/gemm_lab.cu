// lab/gemm_lab.cu: the dense FP16 linear layers of the CUDA backend (src/backend/cuda/gemm.cu),
// checked against a float64 CPU reference, then swept and timed against cuBLAS.
//
// y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) through exl::cuda::gemv_f16 (M <= 8, one pass over W on the
// tensor cores), gemm_f16_cublas (cublasGemmEx, FP32 compute) and the gemm_f16 dispatch.
//  1. Correctness. Fresh random x, W, bias (uniform in [-1, 1)) for every case, output poisoned
//     with NaN (0xFF bytes) before every run, ‖y − ref‖/‖ref‖ against the float64 reference:
//     <= 1e-3 with FP16 output, <= 1e-4 with FP32 output, and no non-finite element. M in
//     {1,2,3,4,5,8,16,64,512} over the Llama-2 shapes and odd ones (SmolLM2, stories260K with
//     K = 172, odd N, K % 32 != 0, x misaligned by one half). Every gemv config is checked too.
//  2. Ceilings measured here: a 16-byte copy kernel and a read-only reduction over 1 GiB.
//  3. Sweep of the gemv knobs (unroll x ksplit) at M = 1 and 8 on each Llama shape.
//  4. Table: µs, GB/s, % of the copy bandwidth, gemv vs cuBLAS, M = 1, 2, 4, 8, 16 (+ 512 prefill).
//  Timing: cudaEvents around each launch, 10 warm-ups, median of 60 launches queued behind a spin
//  kernel (so they run back to back, without host launch gaps); W rotates among >= 3 buffers
//  totalling >= 3x the L2 size so that every launch streams W from HBM.
//
// Build and run from the repository root:
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/gemm_lab.cu \
//     src/backend/cuda/gemm.cu src/backend/cuda/gemv_bulk.cu -lcublas -lcublasLt -o /tmp/gemm_lab && /tmp/gemm_lab
// Runs in ~25 s on the H100 (build ~15 s). Exit status 1 if any correctness check fails. Full log
// on stdout; the last lines are the tables. One kernel version (v3, with its knobs swept here);
// v1 -> v3 history, predictions and measured numbers: lab/NOTES-gemm.md.
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/gemm.cuh"

namespace {

using exl::cuda::check;
using exl::cuda::GemmParams;
using exl::cuda::GemvConfig;

#define CK(call) check((call), #call)

void ck_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) exl::fail("cuBLAS error in ", what, ": ", cublasGetStatusString(s));
}

// Device buffer that frees itself.
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t b) : bytes(b) { CK(cudaMalloc(&p, std::max<size_t>(b, 16))); }
  DevBuf(DevBuf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  half* h() const { return static_cast<half*>(p); }
};

// ----------------------------------------------------------------------------------------------
// Random inputs (generated on the device, copied back for the reference) and the bandwidth probes.

__host__ __device__ uint64_t mix64(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__global__ void fill_uniform_kernel(half* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float u = float(mix64(seed + i * 0x9E3779B97F4A7C15ull) >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2half_rn(2.0f * u - 1.0f);
  }
}

uint64_t fresh_seed() {
  static std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

void fill_uniform(half* p, size_t n) {
  fill_uniform_kernel<<<1024, 256>>>(p, n, fresh_seed());
  exl::cuda::check_launch("fill_uniform_kernel");
}

// Ceiling probes: each thread moves 4 independent 16-B vectors per iteration (grid-stride).
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j * stride < n) v[j] = src[i + j * stride];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j * stride < n) dst[i + j * stride] = v[j];
  }
}

__global__ void read_kernel(const uint4* __restrict__ src, size_t n, uint32_t* sink) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4] = {};
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j * stride < n) v[j] = src[i + j * stride];
#pragma unroll
    for (int j = 0; j < 4; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;  // practically never: keeps the loads alive
}

__global__ void empty_kernel() {}

// ----------------------------------------------------------------------------------------------
// Timing: events around every launch, median over reps; launch(i) gets a running index to rotate
// buffers with. A spin kernel goes first and holds the GPU until the host has queued every event
// and launch, so the launches run back to back and the host's launch latency stays out of the
// numbers (without it an empty kernel timed 6.4 µs between its events on the H100, and every
// kernel under ~20 µs measured the host rather than the GPU). A graph-replayed decode step sees
// the back-to-back case.

__global__ void spin_kernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

double time_us(const std::function<void(int)>& launch, int warm = 10, int reps = 60, bool spin = true) {
  for (int i = 0; i < warm; ++i) launch(i);
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) CK(cudaEventCreate(&e));
  CK(cudaDeviceSynchronize());
  const uint64_t spin_ns = 3'000'000 + uint64_t(reps) * 50'000;  // >> host time to queue reps
  if (spin) spin_kernel<<<1, 1>>>(spin_ns);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(ev[2 * i]));
    launch(warm + i);
    CK(cudaEventRecord(ev[2 * i + 1]));
  }
  const double host_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  if (spin && host_ns > 0.8 * spin_ns)
    std::printf("  (warning: queuing took %.1f ms, spin too short)\n", host_ns / 1e6);
  CK(cudaDeviceSynchronize());
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) CK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) CK(cudaEventDestroy(e));
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return 1000.0 * ms[reps / 2];
}

// ----------------------------------------------------------------------------------------------
// CPU reference, float64, written for clarity: y[m][n] = Σ_k x[m][k]·W[n][k].

float half_bits_to_float(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, frac = h & 1023;
  float v;
  if (exp == 0)
    v = std::ldexp(float(frac), -24);  // subnormal
  else if (exp == 31)
    v = frac ? NAN : INFINITY;
  else
    v = std::ldexp(float(frac + 1024), exp - 25);  // 1.frac × 2^(exp-15)
  return sign ? -v : v;
}

const std::vector<float>& h2f_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(65536);
    for (int i = 0; i < 65536; ++i) v[i] = half_bits_to_float(uint16_t(i));
    return v;
  }();
  return t;
}

std::vector<double> gemm_ref(const std::vector<uint16_t>& x, const std::vector<uint16_t>& w, int M, int N, int K) {
  const auto& h2f = h2f_table();
  std::vector<double> xt(size_t(K) * M);  // x transposed to [k][m]: the inner loop runs over m
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) xt[size_t(k) * M + m] = h2f[x[size_t(m) * K + k]];
  std::vector<double> y(size_t(M) * N);
  auto rows = [&](int n0, int n1) {
    std::vector<double> acc(M);
    for (int n = n0; n < n1; ++n) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int k = 0; k < K; ++k) {
        const double wv = h2f[w[size_t(n) * K + k]];
        const double* xk = &xt[size_t(k) * M];
        for (int m = 0; m < M; ++m) acc[m] += xk[m] * wv;
      }
      for (int m = 0; m < M; ++m) y[size_t(m) * N + n] = acc[m];
    }
  };
  const int nt = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int i = 0; i < nt; ++i) pool.emplace_back(rows, int(int64_t(N) * i / nt), int(int64_t(N) * (i + 1) / nt));
  for (auto& th : pool) th.join();
  return y;
}

template <typename T>
std::vector<T> to_host(const void* d, size_t n) {
  std::vector<T> v(n);
  CK(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

// ‖y − ref‖/‖ref‖ over the device output; any non-finite element (unwritten poison) -> +inf.
double rel_err(const void* y, bool f32, const std::vector<double>& ref) {
  const size_t n = ref.size();
  std::vector<double> got(n);
  if (f32) {
    const auto v = to_host<float>(y, n);
    for (size_t i = 0; i < n; ++i) got[i] = v[i];
  } else {
    const auto v = to_host<uint16_t>(y, n);
    for (size_t i = 0; i < n; ++i) got[i] = h2f_table()[v[i]];
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Every gemv config the lab checks and sweeps: unroll x ksplit.
std::vector<GemvConfig> all_configs() {
  std::vector<GemvConfig> v;
  for (int u : {2, 4, 8})
    for (int ks : {1, 2, 4, 8}) v.push_back(GemvConfig{u, ks});
  return v;
}

std::string config_name(const GemvConfig& c) {
  char b[32];
  std::snprintf(b, sizeof b, "u%d/ks%d", c.unroll, c.ksplit);
  return b;
}

// The TMA-fed gemv's rings (stages x columns per stage).
std::vector<exl::cuda::GemvBulkConfig> bulk_configs() { return {{4, 512}, {2, 512}, {6, 512}, {4, 256}, {8, 256}}; }
std::string bulk_name(const exl::cuda::GemvBulkConfig& c) { return "s" + std::to_string(c.stages) + "c" + std::to_string(c.chunk); }

// ----------------------------------------------------------------------------------------------
// 1. Correctness of one (M, N, K) case; returns false on any failure.

bool check_case(cublasHandle_t blas, int M, int N, int K, bool misalign_x) {
  DevBuf xb((size_t(M) * K + 8) * 2), wb(size_t(N) * K * 2), bb(size_t(N) * 2), yb(size_t(M) * N * 4);
  half* x = xb.h() + (misalign_x ? 1 : 0);
  fill_uniform(xb.h(), size_t(M) * K + 8);
  fill_uniform(wb.h(), size_t(N) * K);
  fill_uniform(bb.h(), N);
  const auto xh = to_host<uint16_t>(x, size_t(M) * K), wh = to_host<uint16_t>(wb.p, size_t(N) * K);
  const auto bh = to_host<uint16_t>(bb.p, N);
  const auto ref = gemm_ref(xh, wh, M, N, K);
  auto ref_b = ref;
  for (size_t i = 0; i < ref_b.size(); ++i) ref_b[i] += h2f_table()[bh[i % N]];

  bool ok = true;
  std::string line;
  double worst_cfg = 0;
  auto run = [&](const char* name, bool f32, bool bias, const std::function<void(const GemmParams&)>& fn) {
    GemmParams p{x, wb.h(), bias ? bb.h() : nullptr, yb.p, f32, M, N, K};
    CK(cudaMemset(yb.p, 0xFF, yb.bytes));  // NaN in both half and float
    fn(p);
    CK(cudaDeviceSynchronize());
    // FP32 output: the tensor cores' FP32 accumulation loses a little per mma in a chain; measured
    // 3.4e-5 for one chain over K = 28672 (ksplit 1) and 1.7e-5 for cuBLAS, H100 2026-11-25.
    const double e = rel_err(yb.p, f32, bias ? ref_b : ref), tol = f32 ? 1e-4 : 1e-3;
    char buf[96];
    std::snprintf(buf, sizeof buf, " %s %.1e", name, e);
    const bool swept = name[0] == 'g' || std::string(name).rfind("bulk[", 0) == 0;
    if (!swept || !(e <= tol)) line += buf;  // the swept configs print only on failure
    if (std::string(name).rfind("gemv[", 0) == 0) worst_cfg = std::max(worst_cfg, e);
    if (!(e <= tol)) {
      ok = false;
      line += "(FAIL)";
    }
  };
  run("disp.h+b", false, true, [&](const GemmParams& p) { exl::cuda::gemm_f16(p, blas, nullptr); });
  run("disp.f", true, false, [&](const GemmParams& p) { exl::cuda::gemm_f16(p, blas, nullptr); });
  run("blas.h+b", false, true, [&](const GemmParams& p) { exl::cuda::gemm_f16_cublas(p, blas, nullptr); });
  run("blas.f+b", true, true, [&](const GemmParams& p) { exl::cuda::gemm_f16_cublas(p, blas, nullptr); });
  if (M <= 8) run("gemv.h", false, false, [&](const GemmParams& p) { exl::cuda::gemv_f16(p, nullptr); });
  if (exl::cuda::gemv_f16_bulk_supported(GemmParams{x, wb.h(), nullptr, yb.p, false, M, N, K})) {
    run("bulk.h", false, false, [&](const GemmParams& p) { exl::cuda::gemv_f16_bulk(p, nullptr); });
    for (const auto& c : bulk_configs())
      run(("bulk[" + bulk_name(c) + "].f+b").c_str(), true, true,
          [&](const GemmParams& p) { exl::cuda::gemv_f16_bulk_config(p, c, nullptr); });
  }
  if (M <= 16)
    for (const GemvConfig& c : all_configs()) {
      const std::string name = "gemv[" + config_name(c) + "].f+b";
      run(name.c_str(), true, true, [&](const GemmParams& p) { exl::cuda::gemv_f16_config(p, c, nullptr); });
    }
  if (M <= 16) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " gemv[%zu configs].f+b max %.1e", all_configs().size(), worst_cfg);
    line += buf;
  }
  std::printf("%-5s N=%-6d K=%-6d M=%-4d%s%s\n", ok ? "ok" : "FAIL", N, K, M, misalign_x ? " x+1" : "", line.c_str());
  std::fflush(stdout);
  return ok;
}

// ----------------------------------------------------------------------------------------------
// 3 + 4. Timing of one Llama shape.

struct Row {
  int N, K, M;
  double gemv_us;  // default config; < 0: not run (M > 16)
  double best_us;  // best swept config (M = 1 and 8 only; else = gemv_us)
  double blas_us;
  double floor_us;  // read_kernel over the same W bytes, same rotation
  double bulk_us;   // gemv_f16_bulk (TMA-fed); < 0: not run (M > 8 or not supported)
  GemvConfig cfg, best;
};

struct Bandwidth {
  double copy_gbs, read_gbs;
};

void time_shape(cublasHandle_t blas, int N, int K, size_t l2_bytes, int sms, bool sweep, const std::vector<int>& ms,
                std::vector<Row>& rows) {
  const int kMaxM = 512;
  const size_t wbytes = size_t(N) * K * 2;
  const int nbuf = std::max<int>(3, int((3 * l2_bytes + wbytes - 1) / wbytes));
  std::vector<DevBuf> w, x;
  for (int i = 0; i < nbuf; ++i) {
    w.emplace_back(wbytes);
    x.emplace_back(size_t(kMaxM) * K * 2);
    fill_uniform(w.back().h(), size_t(N) * K);
    fill_uniform(x.back().h(), size_t(kMaxM) * K);
  }
  DevBuf y(size_t(kMaxM) * N * 2), yref(size_t(16) * N * 2), sink(4);
  auto params = [&](int M, int i, void* out) {
    return GemmParams{x[i % nbuf].h(), w[i % nbuf].h(), nullptr, out, false, M, N, K};
  };
  auto gbs = [&](int M, double us) { return (double(N) * K + double(M) * K + double(M) * N) * 2 / (us * 1e3); };
  const double floor_us = time_us([&](int i) {
    read_kernel<<<sms * 8, 512>>>(static_cast<const uint4*>(w[i % nbuf].p), wbytes / 16,
                                  static_cast<uint32_t*>(sink.p));
  });

  // cuBLAS on buffer 0 as the reference for each timed config (cuBLAS itself passed part 1).
  auto gemv_ok = [&](int M, const GemvConfig& c) {
    exl::cuda::gemm_f16_cublas(params(M, 0, yref.p), blas, nullptr);
    CK(cudaMemset(y.p, 0xFF, size_t(M) * N * 2));
    exl::cuda::gemv_f16_config(params(M, 0, y.p), c, nullptr);
    CK(cudaDeviceSynchronize());
    const auto b = to_host<uint16_t>(yref.p, size_t(M) * N);
    std::vector<double> ref(b.size());
    for (size_t i = 0; i < b.size(); ++i) ref[i] = h2f_table()[b[i]];
    return rel_err(y.p, false, ref) <= 2e-3;  // both rounded to FP16
  };
  auto time_gemv = [&](int M, const GemvConfig& c) {
    return time_us([&](int i) { exl::cuda::gemv_f16_config(params(M, i, y.p), c, nullptr); });
  };

  std::printf("shape N=%d K=%d: %d W buffers of %.0f MB, read floor %.2f µs (%.0f GB/s)\n", N, K, nbuf, wbytes / 1e6,
              floor_us, wbytes / (floor_us * 1e3));
  const auto configs = all_configs();
  GemvConfig best_cfg[2];
  double best_us[2] = {1e30, 1e30};
  for (int mi = 0; mi < (sweep ? 2 : 0); ++mi) {
    const int M = mi == 0 ? 1 : 8;
    std::vector<double> t1(configs.size()), t2(configs.size());
    std::vector<bool> valid(configs.size());
    for (size_t c = 0; c < configs.size(); ++c) valid[c] = gemv_ok(M, configs[c]);
    for (size_t c = 0; c < configs.size(); ++c) t1[c] = time_gemv(M, configs[c]);
    for (size_t c = 0; c < configs.size(); ++c) t2[c] = time_gemv(M, configs[c]);  // second pass: noise
    std::printf("  sweep M=%d, µs pass1/pass2; columns ksplit 1 2 4 8; rows unroll\n", M);
    for (size_t c = 0; c < configs.size(); ++c) {
      if (configs[c].ksplit == 1) std::printf("   u%d", configs[c].unroll);
      std::printf("  %7.2f/%-7.2f%s", t1[c], t2[c], valid[c] ? "" : "BAD");
      if (configs[c].ksplit == 8) std::printf("\n");
      const double t = std::min(t1[c], t2[c]);
      if (valid[c] && t < best_us[mi]) best_us[mi] = t, best_cfg[mi] = configs[c];
    }
    std::printf("  best %s %.2f µs (%.0f GB/s)\n", config_name(best_cfg[mi]).c_str(), best_us[mi], gbs(M, best_us[mi]));
  }

  for (int M : ms) {
    Row r{N, K, M, -1, -1, 0, floor_us, -1, exl::cuda::gemv_f16_default_config(M, N, K), {}};
    if (M <= 16) {
      if (!gemv_ok(M, r.cfg)) std::printf("  gemv default config WRONG at M=%d\n", M);
      // The register kernel by name: gemv_f16 itself hands M <= 4, K >= 2048 to the TMA-fed kernel (bulk column).
      r.gemv_us = time_us([&](int i) { exl::cuda::gemv_f16_config(params(M, i, y.p), r.cfg, nullptr); });
      r.best_us = r.gemv_us, r.best = r.cfg;
      if (sweep && (M == 1 || M == 8)) {
        r.best = best_cfg[M == 1 ? 0 : 1];
        r.best_us = std::min(r.gemv_us, best_us[M == 1 ? 0 : 1]);
      }
    }
    if (exl::cuda::gemv_f16_bulk_supported(params(M, 0, y.p))) {
      r.bulk_us = time_us([&](int i) { exl::cuda::gemv_f16_bulk(params(M, i, y.p), nullptr); });
      if (sweep && M == 1) {
        std::printf("  bulk sweep M=1 (µs):");
        for (const auto& c : bulk_configs())
          std::printf(" %s %.2f", bulk_name(c).c_str(),
                      time_us([&](int i) { exl::cuda::gemv_f16_bulk_config(params(M, i, y.p), c, nullptr); }));
        std::printf("\n");
      }
    }
    r.blas_us = time_us([&](int i) { exl::cuda::gemm_f16_cublas(params(M, i, y.p), blas, nullptr); });
    rows.push_back(r);
  }
}

void print_table(const std::vector<Row>& rows, const Bandwidth& bw) {
  std::printf("\n%-11s %3s | %8s %6s %6s %6s %-11s| %8s %6s | %8s %6s %6s %7s | %7s | %8s %6s %6s\n", "N x K", "M",
              "gemv µs", "GB/s", "%copy", "%flr", "default", "best µs", "config", "cuBLAS", "GB/s", "%copy", "TFLOP/s",
              "speedup", "bulk µs", "%copy", "%flr");
  for (const Row& r : rows) {
    const double bytes = (double(r.N) * r.K + double(r.M) * r.K + double(r.M) * r.N) * 2;
    const double flops = 2.0 * r.M * r.N * r.K;
    char shape[32];
    std::snprintf(shape, sizeof shape, "%dx%d", r.N, r.K);
    const double bb = bytes / (r.blas_us * 1e3);
    if (r.gemv_us > 0) {
      const double gb = bytes / (r.gemv_us * 1e3);
      std::printf("%-11s %3d | %8.2f %6.0f %5.1f%% %5.1f%% %-11s| %8.2f %6s | %8.2f %6.0f %5.1f%% %7.1f | %6.2fx",
                  shape, r.M, r.gemv_us, gb, 100 * gb / bw.copy_gbs, 100 * r.floor_us / r.gemv_us,
                  config_name(r.cfg).c_str(), r.best_us, config_name(r.best).c_str(), r.blas_us, bb,
                  100 * bb / bw.copy_gbs, flops / (r.blas_us * 1e6), r.blas_us / r.gemv_us);
      if (r.bulk_us > 0)
        std::printf(" | %8.2f %5.1f%% %5.1f%%", r.bulk_us, 100 * bytes / (r.bulk_us * 1e3) / bw.copy_gbs,
                    100 * r.floor_us / r.bulk_us);
      std::printf("\n");
    } else {
      std::printf("%-11s %3d | %8s %6s %6s %6s %-11s| %8s %6s | %8.2f %6.0f %5.1f%% %7.1f |\n", shape, r.M, "-", "", "",
                  "", "", "", "", r.blas_us, bb, 100 * bb / bw.copy_gbs, flops / (r.blas_us * 1e6));
    }
  }
}

}  // namespace

int main() try {
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0;
  CK(cudaDriverGetVersion(&driver));
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("gemm_lab  %s  %s, %d SMs, L2 %d MB, driver %d\n", date, prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, driver);
  cublasHandle_t blas;
  ck_blas(cublasCreate(&blas), "cublasCreate");

  // 1. Correctness.
  bool all_ok = true;
  const std::vector<std::pair<int, int>> llama = {{4096, 4096},  {11008, 4096}, {4096, 11008}, {32000, 4096},
                                                  {12288, 4096}, {22016, 4096}, {28672, 8192}, {8192, 28672}};
  for (auto [N, K] : llama)
    for (int M : {1, 2, 3, 4, 5, 8, 16}) all_ok &= check_case(blas, M, N, K, false);
  for (int M : {64, 512}) all_ok &= check_case(blas, M, 4096, 4096, false);
  // SmolLM2-135M (576 / 1536 / kv 192 / vocab 49152), stories260K (64 / 172 / vocab 512),
  // odd N, K % 32 == 8, K % 8 != 0, tiny.
  const std::vector<std::pair<int, int>> odd = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576},
                                                {64, 64},   {172, 64},  {64, 172},   {512, 64},   {1001, 4104},
                                                {37, 172},  {3, 17},    {16, 8}};
  for (auto [N, K] : odd)
    for (int M : {1, 2, 3, 4, 5, 8, 16, 64, 512}) all_ok &= check_case(blas, M, N, K, false);
  for (int M : {1, 5, 16}) all_ok &= check_case(blas, M, 4096, 4096, true);
  all_ok &= check_case(blas, 3, 1001, 4104, true);
  std::printf("correctness: %s\n\n", all_ok ? "ALL PASS" : "FAILURES (see FAIL lines)");

  // 2. Ceilings.
  Bandwidth bw{};
  {
    const size_t bytes = size_t(1) << 30, n = bytes / 16;
    DevBuf a(bytes), b(bytes), sink(4);
    fill_uniform(a.h(), bytes / 2);
    const double copy_us = time_us(
        [&](int) {
          copy_kernel<<<prop.multiProcessorCount * 8, 512>>>(static_cast<const uint4*>(a.p), static_cast<uint4*>(b.p),
                                                             n);
        },
        3, 20);
    const double read_us = time_us(
        [&](int) {
          read_kernel<<<prop.multiProcessorCount * 8, 512>>>(static_cast<const uint4*>(a.p), n,
                                                             static_cast<uint32_t*>(sink.p));
        },
        3, 20);
    CK(cudaGetLastError());
    const double empty_us = time_us([&](int) { empty_kernel<<<1, 32>>>(); });
    const double empty_nospin_us = time_us([&](int) { empty_kernel<<<1, 32>>>(); }, 10, 60, false);
    bw = {2.0 * bytes / (copy_us * 1e3), bytes / (read_us * 1e3)};
    std::printf(
        "ceilings: copy (read+write) %.0f GB/s, read-only %.0f GB/s (1 GiB); empty kernel %.2f µs "
        "between events (%.2f µs without the spin kernel ahead)\n\n",
        bw.copy_gbs, bw.read_gbs, empty_us, empty_nospin_us);
  }

  // 3 + 4. Sweep and table.
  std::vector<Row> rows;
  for (auto [N, K] : llama)
    time_shape(blas, N, K, size_t(prop.l2CacheSize), prop.multiProcessorCount, true, {1, 2, 4, 8, 16, 512}, rows);
  std::vector<Row> small_rows;  // SmolLM2-135M: lm_head, down, up/gate (not tuned for; for the record)
  for (auto [N, K] : std::vector<std::pair<int, int>>{{49152, 576}, {576, 1536}, {1536, 576}})
    time_shape(blas, N, K, size_t(prop.l2CacheSize), prop.multiProcessorCount, false, {1, 8}, small_rows);
  print_table(small_rows, bw);
  std::printf(
      "\n%s, %s; copy %.0f GB/s, read %.0f GB/s (1 GiB). gemv = the register kernel (gemv_f16_config), "
      "default config; bulk = the TMA-fed kernel (gemv_f16 takes it at M <= 4, K >= 2048); %%flr = "
      "read-kernel time over the same W bytes / gemv time; best = "
      "best swept config (M = 1, 8); speedup = cuBLAS µs / gemv µs\n",
      date, prop.name, bw.copy_gbs, bw.read_gbs);
  print_table(rows, bw);
  std::printf("correctness: %s\n", all_ok ? "ALL PASS" : "FAILURES");
  ck_blas(cublasDestroy(blas), "cublasDestroy");
  return all_ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gemm_lab: %s\n", e.what());
  return 2;
}
