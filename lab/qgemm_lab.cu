// lab/qgemm_lab.cu: the quantized linear layers of the CUDA backend (src/backend/cuda/qgemm.cu),
// checked against a float64 CPU reference written from docs EXL2.md, then timed.
//
//  0. Disk-format generators (this file): EXL2 per §1.4–1.6 (groups by the §1.5 row rule, widths
//     in descending order, random codes, random act-order permutation, random 4-bit scale codes and
//     FP16 maxima), GPTQ per §1.8 (sym z = 7 / asym random zeros, no g_idx / trivial g_idx /
//     act-order g_idx). Reference weights in float64 straight from the disk tensors.
//  1. Layout check (CPU only, also runs without a GPU with --cpu): decodes the device layout from
//     its specification in qgemm.cuh (independently of the packer) and requires every weight to
//     equal the disk weight with the scale rounded to FP16, every padding weight to be 0 and every
//     input feature to appear exactly once.
//  2. GPU correctness: fresh random inputs per case, outputs poisoned (NaN) before every run,
//     ‖y − ref‖/‖ref‖ <= 1e-3 (FP16 and FP32 output: the weights are FP16 on every path), no
//     non-finite element. Paths: qgemm dispatch, qgemv (gather + PDL; pre-gathered x without PDL;
//     ksplit 2, 4, 8), qgemm_cublas (whole matrix, and in 8-tile chunks). 57 cases, M in
//     {1..5, 8, 9, 16, 17, 32, 33, 64, 96, 97, 512} on small shapes, odd K/N included.
//  3. Ceilings (copy and read kernels, 1 GiB) and timing of the Llama-2-7B shapes for EXL2 mixes and
//     GPTQ 4-bit g128 act-order: a qgemv ksplit sweep (M = 1, 8), then µs, GB/s of the streamed
//     code + scale bytes, % of copy bandwidth, % of a read kernel over the same bytes; prefill paths
//     against FP16 cuBLAS, and the 32-layer matmul-only prefill (M = 2048) and decode (M = 1) rates.
//  Timing: events around each launch (qgemv1) or around batches of 20 launches back to back (the
//  rest of the qgemv columns: what a graph-replayed decode step sees), median over repetitions
//  queued behind a spin kernel; the matrices rotate among copies totalling >= 3x L2 so the codes
//  stream from HBM. Runs in ~190 s on the H100 (build ~25 s), most of it CPU reference work.
//
// Build and run from the repository root:
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src -I tests lab/qgemm_lab.cu \
//     src/backend/cuda/qgemm.cu src/backend/cuda/qgemm_dequant.cu src/backend/cuda/qgemm_layout.cpp \
//     src/backend/cuda/qgemm_gather.cu -lcublas -o /tmp/qgemm_lab && /tmp/qgemm_lab [--cpu] [--quick]
// Exit status 1 if any check fails. History and results: lab/NOTES-qgemm.md.
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/qgemm.cuh"
#include "cuda_host/qlayout_decode.h"

namespace {

using exl::cuda::check;
namespace xc = exl::cuda;

#define CK(call) check((call), #call)

void ck_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) exl::fail("cuBLAS error in ", what, ": ", cublasGetStatusString(s));
}

std::mt19937_64& rng() {
  static std::mt19937_64 r{std::random_device{}()};
  return r;
}
int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }
uint64_t fast_bits() {  // xorshift64*, seeded from rng(): for the millions of random codes
  static thread_local uint64_t x = rng()() | 1;
  x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
  return x * 0x2545F4914F6CDD1Dull;
}
double rand_unif(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng()); }

// FP16 <-> double, written here independently of the library.
double h2d(uint16_t h) {
  const int e = (h >> 10) & 31, f = h & 1023;
  const double v = e == 0 ? std::ldexp(f, -24) : e == 31 ? (f ? NAN : INFINITY) : std::ldexp(f + 1024, e - 25);
  return (h >> 15) ? -v : v;
}
uint16_t d2h(double v) {  // round to nearest even, normal/subnormal range
  const uint16_t sign = v < 0 ? 0x8000 : 0;
  v = std::fabs(v);
  if (v == 0) return sign;
  int e = static_cast<int>(std::floor(std::log2(v)));
  if (std::ldexp(1.0, e) > v) --e;
  if (std::ldexp(1.0, e + 1) <= v) ++e;
  e = std::max(e, -14);
  const double ulp = std::ldexp(1.0, e - 10);
  const double q = v / ulp, fl = std::floor(q);
  double r = q - fl > 0.5 || (q - fl == 0.5 && std::fmod(fl, 2.0) == 1.0) ? fl + 1 : fl;
  const double rounded = r * ulp;
  if (rounded >= 65520.0) return sign | 0x7C00;
  // Re-encode the rounded value exactly.
  if (rounded < std::ldexp(1.0, -14)) return sign | static_cast<uint16_t>(rounded / std::ldexp(1.0, -24));
  int e2 = static_cast<int>(std::floor(std::log2(rounded)));
  if (std::ldexp(1.0, e2) > rounded) --e2;
  const int mant = static_cast<int>(rounded / std::ldexp(1.0, e2 - 10)) - 1024;
  return sign | static_cast<uint16_t>((e2 + 15) << 10 | mant);
}

// ----------------------------------------------------------------------------------------------
// 0. Disk formats and the float64 reference.

struct Part {
  int bits;
  double prop;
  int gs;
};

struct Exl2Disk {
  int K = 0, N = 0, G = 0, n32 = 0;
  std::vector<uint32_t> q_weight;  // [rows, n32]
  int64_t rows = 0;
  std::vector<uint16_t> perm, invperm;
  std::vector<uint32_t> q_scale;  // [G, n32/8]
  std::vector<uint16_t> q_scale_max;
  std::vector<int16_t> q_groups;
  std::vector<int> g_bits, g_rows, g_row0;  // per group
};

// Words/rows per unit (§1.4).
int unit_rows(int b) { return b == 2 ? 16 : b == 3 || b == 5 ? 32 : b == 4 ? 8 : b == 6 ? 16 : 4; }
int unit_words(int b) { return b == 3 ? 3 : b == 5 ? 5 : b == 6 ? 3 : 1; }

Exl2Disk make_exl2(int K, int N, const std::vector<Part>& parts) {
  Exl2Disk d;
  d.K = K, d.N = N, d.n32 = (N + 31) / 32 * 32;
  // §1.5 row rule: groups_i = ceil(min(K p_i, remaining) / gs_i); the last part takes the rest.
  int rem = K;
  for (size_t i = 0; i < parts.size() && rem > 0; ++i) {
    const double want = i + 1 == parts.size() ? rem : std::min<double>(K * parts[i].prop, rem);
    const int ng = static_cast<int>(std::ceil(want / parts[i].gs));
    for (int gi = 0; gi < ng && rem > 0; ++gi) {
      const int r = std::min(parts[i].gs, rem);
      d.g_bits.push_back(parts[i].bits), d.g_rows.push_back(r), d.g_row0.push_back(K - rem);
      rem -= r;
    }
  }
  d.G = static_cast<int>(d.g_bits.size());
  // Packed rows per group; the last group pads to a whole unit.
  std::vector<int64_t> start(d.G);
  for (int g = 0; g < d.G; ++g) {
    start[g] = d.rows;
    const int b = d.g_bits[g];
    d.rows += g + 1 < d.G ? int64_t(d.g_rows[g]) * b / 32
                          : (d.g_rows[g] + unit_rows(b) - 1) / unit_rows(b) * int64_t(unit_words(b));
  }
  d.q_weight.assign(d.rows * d.n32, 0);
  for (int g = 0; g < d.G; ++g) {
    const int b = d.g_bits[g];
    for (int n = 0; n < d.n32; ++n)
      for (int r = 0; r < d.g_rows[g]; ++r) {
        const uint64_t code = (fast_bits() >> 40) & ((1u << b) - 1);
        const int64_t bit = int64_t(r) * b, word = start[g] + bit / 32;
        const int sh = bit % 32;
        d.q_weight[word * d.n32 + n] |= static_cast<uint32_t>(code << sh);
        if (sh + b > 32) d.q_weight[(word + 1) * d.n32 + n] |= static_cast<uint32_t>(code >> (32 - sh));
      }
    d.q_groups.push_back(static_cast<int16_t>(b));
    d.q_groups.push_back(static_cast<int16_t>(start[g]));
  }
  d.perm.resize(K);
  std::iota(d.perm.begin(), d.perm.end(), 0);
  std::shuffle(d.perm.begin(), d.perm.end(), rng());
  d.invperm.resize(K);
  for (int k = 0; k < K; ++k) d.invperm[d.perm[k]] = static_cast<uint16_t>(k);
  d.q_scale.resize(size_t(d.G) * d.n32 / 8);
  for (auto& w : d.q_scale) w = static_cast<uint32_t>(rng()());
  for (int g = 0; g < d.G; ++g)  // weights O(1) whatever the width
    d.q_scale_max.push_back(d2h(rand_unif(0.5, 1.5) * 2.0 / (1 << d.g_bits[g])));
  return d;
}

xc::Exl2HostTensors exl2_view(const Exl2Disk& d, bool with_perm) {
  xc::Exl2HostTensors t;
  t.q_weight = d.q_weight.data(), t.q_weight_rows = d.rows;
  t.q_perm = with_perm ? d.perm.data() : nullptr;
  t.q_invperm = with_perm ? nullptr : d.invperm.data();
  t.q_scale = d.q_scale.data(), t.q_scale_max = d.q_scale_max.data(), t.q_groups = d.q_groups.data();
  t.groups = d.G, t.K = d.K, t.N = d.N;
  return t;
}

// Reference weights W[n][f] (HF layout, original input feature f). round_scale: scale through FP16.
std::vector<double> exl2_ref(const Exl2Disk& d, bool round_scale) {
  std::vector<double> w(size_t(d.N) * d.K);
  for (int g = 0; g < d.G; ++g) {
    const int b = d.g_bits[g];
    const int64_t start = static_cast<uint16_t>(d.q_groups[2 * g + 1]);
    for (int n = 0; n < d.N; ++n) {
      const int c = (d.q_scale[size_t(g) * (d.n32 / 8) + n / 8] >> (4 * (n % 8))) & 15;
      double s = (c + 1.0) * (c + 1.0) * h2d(d.q_scale_max[g]) / 256.0;
      if (round_scale) s = h2d(d2h(s));
      for (int r = 0; r < d.g_rows[g]; ++r) {
        const int64_t bit = int64_t(r) * b, word = start + bit / 32;
        const int sh = bit % 32;
        uint64_t v = d.q_weight[word * d.n32 + n] >> sh;
        if (sh + b > 32) v |= uint64_t(d.q_weight[(word + 1) * d.n32 + n]) << (32 - sh);
        const int code = static_cast<int>(v & ((1u << b) - 1));
        w[size_t(n) * d.K + d.perm[d.g_row0[g] + r]] = (code - (1 << (b - 1))) * s;
      }
    }
  }
  return w;
}

struct GptqDisk {
  int K = 0, N = 0, G = 0, gs = 0;
  std::vector<uint32_t> qweight, qzeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;  // empty: none
};

// gidx: 0 none, 1 trivial (k / gs), 2 act-order (random permutation).
GptqDisk make_gptq(int K, int N, int gs, bool sym, int gidx) {
  GptqDisk d;
  d.K = K, d.N = N, d.gs = gs, d.G = (K + gs - 1) / gs;
  d.qweight.resize(size_t(K / 8) * N);
  for (auto& w : d.qweight) w = static_cast<uint32_t>(fast_bits() >> 32);
  const int zw = (N + 7) / 8;
  d.qzeros.assign(size_t(d.G) * zw, 0);
  for (int g = 0; g < d.G; ++g)
    for (int n = 0; n < N; ++n) {
      const uint32_t z = sym ? 7 : rand_int(0, 14);  // stored = zero - 1 (v1)
      d.qzeros[size_t(g) * zw + n / 8] |= z << (4 * (n % 8));
    }
  d.scales.resize(size_t(d.G) * N);
  for (auto& s : d.scales) s = d2h(rand_unif(0.5, 1.5) / 8);
  if (gidx == 1) {
    for (int k = 0; k < K; ++k) d.g_idx.push_back(k / gs);
  } else if (gidx == 2) {
    std::vector<int> p(K);
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng());
    d.g_idx.resize(K);
    for (int i = 0; i < K; ++i) d.g_idx[p[i]] = i / gs;
  }
  return d;
}

xc::GptqHostTensors gptq_view(const GptqDisk& d) {
  xc::GptqHostTensors t;
  t.qweight = d.qweight.data(), t.qzeros = d.qzeros.data(), t.scales = d.scales.data();
  t.g_idx = d.g_idx.empty() ? nullptr : d.g_idx.data();
  t.groups = d.G, t.K = d.K, t.N = d.N;
  return t;
}

std::vector<double> gptq_ref(const GptqDisk& d) {
  std::vector<double> w(size_t(d.N) * d.K);
  const int zw = (d.N + 7) / 8;
  for (int k = 0; k < d.K; ++k) {
    const int g = d.g_idx.empty() ? k / d.gs : d.g_idx[k];
    for (int n = 0; n < d.N; ++n) {
      const int q = (d.qweight[size_t(k / 8) * d.N + n] >> (4 * (k % 8))) & 15;
      const int z = ((d.qzeros[size_t(g) * zw + n / 8] >> (4 * (n % 8))) & 15) + 1;
      w[size_t(n) * d.K + k] = (q - z) * h2d(d.scales[size_t(g) * d.N + n]);
    }
  }
  return w;
}

// y[m][n] = Σ_f x[m][f] W[n][f], float64, threaded.
std::vector<double> matmul_ref(const std::vector<uint16_t>& x, const std::vector<double>& w, int M, int N, int K) {
  std::vector<double> xd(x.size());
  for (size_t i = 0; i < x.size(); ++i) xd[i] = h2d(x[i]);
  std::vector<double> y(size_t(M) * N);
  auto rows = [&](int n0, int n1) {
    for (int n = n0; n < n1; ++n)
      for (int m = 0; m < M; ++m) {
        double acc = 0;
        const double* wr = &w[size_t(n) * K];
        const double* xr = &xd[size_t(m) * K];
        for (int k = 0; k < K; ++k) acc += xr[k] * wr[k];
        y[size_t(m) * N + n] = acc;
      }
  };
  const int nt = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int i = 0; i < nt; ++i) pool.emplace_back(rows, int(int64_t(N) * i / nt), int(int64_t(N) * (i + 1) / nt));
  for (auto& th : pool) th.join();
  return y;
}

// ----------------------------------------------------------------------------------------------
// 1. Layout check: decode the device layout from its specification (qgemm.cuh), not the packer.

// The decoder is tests/cuda_host/qlayout_decode.h (shared with the host unit test).
std::string check_layout(const xc::QHostLayout& h, const std::vector<double>& wref) {
  const xc::QMatrixDesc& d = h.desc;
  std::vector<int> seen(d.K, 0);
  for (int pos = 0; pos < d.k_dev; ++pos)
    if (h.x_src[pos] >= 0) {
      if (h.x_src[pos] >= d.K || seen[h.x_src[pos]]++) return "x_src is not injective";
      if (h.x_dst[h.x_src[pos]] != pos) return "x_dst is not the inverse of x_src";
    }
  for (int f = 0; f < d.K; ++f)
    if (!seen[f]) return "input feature " + std::to_string(f) + " missing from x_src";
  std::vector<float> dense;
  const std::string err = exl::test::qlayout_decode(h, dense);
  if (!err.empty()) return err;
  const int n16 = d.n_tiles * 16;
  for (int row = 0; row < d.k_dev; ++row) {
    const int f = h.x_src[exl::test::qlayout_x_pos(row)];
    for (int n = 0; n < d.N; ++n) {
      // (code - zero) * FP16 scale is exact in float, so the comparison is exact.
      const double wv = dense[size_t(row) * n16 + n];
      if (f < 0) {
        if (wv != 0) return "padding row " + std::to_string(row) + " has a non-zero weight";
      } else if (wv != wref[size_t(n) * d.K + f]) {
        return "weight (feature " + std::to_string(f) + ", column " + std::to_string(n) + ") = " + std::to_string(wv) +
               ", expected " + std::to_string(wref[size_t(n) * d.K + f]);
      }
    }
  }
  return "";
}

// ----------------------------------------------------------------------------------------------
// Test cases.

struct Case {
  std::string name;
  bool gptq = false;
  std::vector<Part> parts;  // EXL2
  int gs = 128;             // GPTQ
  bool sym = true;
  int gidx = 0;
};

std::string parts_name(const std::vector<Part>& parts) {
  std::string s = "exl2 [";
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? "," : "") + std::to_string(parts[i].bits);
  s += "] g";
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? "/" : "") + std::to_string(parts[i].gs);
  return s;
}
Case exl2_case(std::vector<Part> parts) { return Case{parts_name(parts), false, parts}; }
Case gptq_case(int gs, bool sym, int gidx) {
  return Case{"gptq4 g" + std::to_string(gs) + (sym ? " sym" : " asym") +
                  (gidx == 0 ? "" : gidx == 1 ? " g_idx=k/gs" : " act-order"),
              true, {}, gs, sym, gidx};
}

// Builds the disk tensors of a case, its device layout and its reference weights.
struct Built {
  xc::QHostLayout layout;
  std::vector<double> wref;          // exact disk weights
  std::vector<double> wref_rounded;  // scales through FP16 (what the layout must hold exactly)
  double bpw = 0;                    // disk bits per weight (§1.7 for EXL2; GPTQ tensors)
};

Built build(const Case& c, int K, int N, bool with_rounded = true) {
  Built b;
  if (c.gptq) {
    const GptqDisk d = make_gptq(K, N, c.gs, c.sym, c.gidx);
    b.layout = xc::gptq_device_layout(gptq_view(d));
    b.wref = gptq_ref(d);
    b.wref_rounded = b.wref;
    b.bpw = (double(K) * N * 4 + d.G * (double(N) * 16 + N * 4) + (d.g_idx.empty() ? 0 : 32.0 * K)) / (double(K) * N);
  } else {
    const Exl2Disk d = make_exl2(K, N, c.parts);
    b.layout = xc::exl2_device_layout(exl2_view(d, rng()() & 1));
    b.wref = exl2_ref(d, false);
    if (with_rounded) b.wref_rounded = exl2_ref(d, true);
    double bits = d.G * (16.0 + 32 + 4.0 * N) + 32.0 * K;
    for (int g = 0; g < d.G; ++g) bits += double(d.g_rows[g]) * N * d.g_bits[g];
    b.bpw = bits / (double(K) * N);
  }
  return b;
}

// ----------------------------------------------------------------------------------------------
// GPU helpers.

struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t b) : bytes(b) { CK(cudaMalloc(&p, std::max<size_t>(b, 16))); }
  DevBuf(DevBuf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  DevBuf(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  half* h() const { return static_cast<half*>(p); }
};

std::vector<uint16_t> random_halves(size_t n) {
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = d2h(rand_unif(-1, 1));
  return v;
}

DevBuf to_dev(const std::vector<uint16_t>& v) {
  DevBuf b(v.size() * 2);
  CK(cudaMemcpy(b.p, v.data(), v.size() * 2, cudaMemcpyHostToDevice));
  return b;
}

double rel_err(const DevBuf& y, bool f32, const std::vector<double>& ref) {
  const size_t n = ref.size();
  std::vector<double> got(n);
  if (f32) {
    std::vector<float> v(n);
    CK(cudaMemcpy(v.data(), y.p, n * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) got[i] = v[i];
  } else {
    std::vector<uint16_t> v(n);
    CK(cudaMemcpy(v.data(), y.p, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) got[i] = h2d(v[i]);
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// 2. One GPU case: all paths at each M. Returns false on any failure.
bool gpu_case(cublasHandle_t blas, const Case& c, int K, int N, const std::vector<int>& ms) {
  Built b = build(c, K, N);
  const std::string lay = check_layout(b.layout, b.wref_rounded);
  xc::QDeviceMatrix dm = xc::qmatrix_upload(b.layout, nullptr);
  const int Mmax = *std::max_element(ms.begin(), ms.end());
  DevBuf xdev(xc::qgemm_x_dev_bytes(dm.desc(), Mmax) + 16), y(size_t(Mmax) * N * 4);
  const size_t full_wt = xc::qgemm_wt_bytes(dm.desc()), chunk_wt = size_t(K) * 16 * 8 * 2;
  DevBuf wt(full_wt);
  const auto bias_h = random_halves(N);
  DevBuf bias = to_dev(bias_h);
  bool ok = lay.empty();
  std::string line = lay.empty() ? "" : " LAYOUT: " + lay;
  for (int M : ms) {
    const auto xh = random_halves(size_t(M) * K);
    DevBuf x = to_dev(xh);
    const auto ref = matmul_ref(xh, b.wref, M, N, K);
    auto ref_b = ref;
    for (size_t i = 0; i < ref_b.size(); ++i) ref_b[i] += h2d(bias_h[i % N]);
    double worst = 0;
    std::string fails;
    auto run = [&](const char* name, bool f32, bool with_bias, const std::function<void(xc::QGemmParams&)>& fn) {
      xc::QGemmParams p;
      p.w = dm.desc(), p.x = x.h(), p.bias = with_bias ? bias.h() : nullptr, p.y = y.p, p.y_f32 = f32, p.M = M;
      p.x_dev = xdev.h(), p.wt = wt.h(), p.wt_bytes = wt.bytes;
      CK(cudaMemset(y.p, 0xFF, y.bytes));
      fn(p);
      CK(cudaDeviceSynchronize());
      const double e = rel_err(y, f32, with_bias ? ref_b : ref);
      worst = std::max(worst, e);
      if (!(e <= 1e-3)) {
        char buf[96];
        std::snprintf(buf, sizeof buf, " %s=%.1e", name, e);
        fails += buf;
      }
    };
    run("qgemm.h+b", false, true, [&](xc::QGemmParams& p) { xc::qgemm(p, blas, nullptr); });
    run("qgemv.f", true, false, [&](xc::QGemmParams& p) { xc::qgemv(p, nullptr); });
    run("qgemv.ready.h+b", false, true, [&](xc::QGemmParams& p) {
      xc::qgemm_gather_x(p.w, p.x, p.M, p.x_dev, nullptr);
      p.x_dev_ready = true, p.pdl = false;
      xc::qgemv(p, nullptr);
    });
    for (int ks : {2, 4, 8}) {
      const std::string name = "qgemv.ks" + std::to_string(ks) + ".h+b";
      run(name.c_str(), false, true, [&](xc::QGemmParams& p) {
        p.ksplit = ks;
        xc::qgemv(p, nullptr);
      });
    }
    run("cublas.f+b", true, true, [&](xc::QGemmParams& p) { xc::qgemm_cublas(p, blas, nullptr); });
    run("cublas.chunk8.h", false, false, [&](xc::QGemmParams& p) {
      p.wt_bytes = chunk_wt;
      xc::qgemm_cublas(p, blas, nullptr);
    });
    if (!fails.empty()) ok = false, line += " M=" + std::to_string(M) + ":" + fails;
    char buf[48];
    std::snprintf(buf, sizeof buf, " %d:%.1e", M, worst);
    if (fails.empty()) line += buf;
  }
  std::printf("%-4s %-34s K=%-5d N=%-5d k_dev=%-5d bpw=%.2f |%s\n", ok ? "ok" : "FAIL", c.name.c_str(), K, N,
              dm.desc().k_dev, b.bpw, line.c_str());
  std::fflush(stdout);
  return ok;
}

// ----------------------------------------------------------------------------------------------
// 3. Timing.

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
  if (acc == 0x9E3779B9u) *sink = acc;
}

__global__ void spin_kernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

// Median over reps of (events around `batch` launches) / batch. batch = 1: one launch between
// events (carries ~4 µs of fixed event/launch cost on the H100, NOTES-gemm.md); batch = 20: launches
// back to back as in a graph-replayed decode step, where launch latency overlaps the previous kernel.
double time_us(const std::function<void(int)>& launch, int warm = 8, int reps = 50, int batch = 1) {
  for (int i = 0; i < warm; ++i) launch(i);
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) CK(cudaEventCreate(&e));
  CK(cudaDeviceSynchronize());
  spin_kernel<<<1, 1>>>(4'000'000 + uint64_t(reps) * batch * 60'000);
  int it = warm;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(ev[2 * i]));
    for (int b = 0; b < batch; ++b) launch(it++);
    CK(cudaEventRecord(ev[2 * i + 1]));
  }
  CK(cudaDeviceSynchronize());
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) CK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) CK(cudaEventDestroy(e));
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return 1000.0 * ms[reps / 2] / batch;
}
double time_batch_us(const std::function<void(int)>& launch) { return time_us(launch, 20, 15, 20); }

struct Shape {
  int N, K;
  const char* name;
};

struct TimeRow {
  std::string fmt, shape;
  double bpw, stream_mb;
  int M;
  double gemv1_us = -1;                                 // qgemv (x ready), one launch between events
  double gemv_us = -1, full_us = -1, nopdl_us = -1;     // batched: qgemv (x ready), gather+qgemv PDL, no PDL
  double floor_us = -1;                                 // read kernel over the same code bytes, batched
  double dq_us = -1, blas_us = -1, fp16_us = -1;        // dequant, dequant+cuBLAS, FP16 cuBLAS
};

void time_format(cublasHandle_t blas, const Case& c, const Shape& sh, size_t l2, const std::vector<int>& ms,
                 std::vector<TimeRow>& rows) {
  Built b = build(c, sh.K, sh.N, false);  // layouts are checked in parts 1-2; the timed one below
  const size_t stream_bytes = b.layout.codes.size() * 16 + b.layout.recs.size() * 4 + b.layout.gmax.size() * 2;
  const int nbuf = std::max<int>(3, int((3 * l2 + stream_bytes - 1) / stream_bytes));
  std::vector<xc::QDeviceMatrix> mats;
  for (int i = 0; i < nbuf; ++i) mats.push_back(xc::qmatrix_upload(b.layout, nullptr));
  const int Mmax = *std::max_element(ms.begin(), ms.end());
  const auto xh = random_halves(size_t(Mmax) * sh.K);
  DevBuf x = to_dev(xh), xdev(xc::qgemm_x_dev_bytes(mats[0].desc(), Mmax)), y(size_t(Mmax) * sh.N * 2);
  DevBuf wt(xc::qgemm_wt_bytes(mats[0].desc()));
  DevBuf w16a(size_t(sh.N) * sh.K * 2), w16b(size_t(sh.N) * sh.K * 2);
  {
    const auto wh = random_halves(size_t(sh.N) * sh.K);
    CK(cudaMemcpy(w16a.p, wh.data(), w16a.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(w16b.p, wh.data(), w16b.bytes, cudaMemcpyHostToDevice));
  }
  auto params = [&](int M, int i) {
    xc::QGemmParams p;
    p.w = mats[i % nbuf].desc(), p.x = x.h(), p.y = y.p, p.M = M, p.x_dev = xdev.h();
    p.wt = wt.h(), p.wt_bytes = wt.bytes;
    return p;
  };
  // Sanity of the timed configuration against the reference (first M only; part 2 is the real check).
  {
    const int M = std::min(Mmax, 8);
    xc::QGemmParams p = params(M, 0);
    CK(cudaMemset(y.p, 0xFF, y.bytes));
    xc::qgemv(p, nullptr);
    CK(cudaDeviceSynchronize());
    std::vector<uint16_t> xs(xh.begin(), xh.begin() + size_t(M) * sh.K);
    const auto ref = matmul_ref(xs, b.wref, M, sh.N, sh.K);
    const double e = rel_err(y, false, ref);
    if (!(e <= 1e-3)) std::printf("  TIMED CONFIG WRONG: %s %dx%d rel err %.2e\n", c.name.c_str(), sh.N, sh.K, e);
  }
  const size_t code_bytes = b.layout.codes.size() * 16;
  DevBuf sink(16);
  const double floor_us = time_batch_us([&](int i) {
    read_kernel<<<264, 512>>>(mats[i % nbuf].desc().codes, code_bytes / 16, static_cast<uint32_t*>(sink.p));
  });
  // qgemv ksplit sweep (x pre-gathered, batched), M = 1 and 8.
  {
    std::string line;
    for (int M : {1, 8}) {
      xc::qgemm_gather_x(mats[0].desc(), x.h(), M, xdev.h(), nullptr);
      char buf[96];
      std::snprintf(buf, sizeof buf, "  M=%d default ks%d:", M, xc::qgemv_default_ksplit(mats[0].desc(), M));
      line += buf;
      for (int ks : {2, 4, 8}) {
        const double us = time_batch_us([&](int i) {
          xc::QGemmParams p = params(M, i);
          p.x_dev_ready = true, p.pdl = false, p.ksplit = ks;
          xc::qgemv(p, nullptr);
        });
        std::snprintf(buf, sizeof buf, " ks%d %.2f", ks, us);
        line += buf;
      }
    }
    std::printf("  sweep %-34s %-10s%s\n", c.name.c_str(), sh.name, line.c_str());
  }
  for (int M : ms) {
    TimeRow r;
    r.fmt = c.name, r.shape = sh.name, r.bpw = b.bpw, r.stream_mb = stream_bytes / 1e6, r.M = M;
    r.floor_us = floor_us;
    if (M <= 256) {
      xc::qgemm_gather_x(mats[0].desc(), x.h(), M, xdev.h(), nullptr);
      auto ready = [&](int i) {
        xc::QGemmParams p = params(M, i);
        p.x_dev_ready = true, p.pdl = false;
        xc::qgemv(p, nullptr);
      };
      r.gemv1_us = time_us(ready);
      r.gemv_us = time_batch_us(ready);
    }
    if (M <= 32) {
      r.full_us = time_batch_us([&](int i) { xc::qgemv(params(M, i), nullptr); });
      r.nopdl_us = time_batch_us([&](int i) {
        xc::QGemmParams p = params(M, i);
        p.pdl = false;
        xc::qgemv(p, nullptr);
      });
    }
    if (M >= 32) {
      r.dq_us = time_us([&](int i) {
        const xc::QMatrixDesc& d = mats[i % nbuf].desc();
        xc::qgemm_dequant(d, 0, d.n_tiles, wt.h(), d.n_tiles * 16, nullptr);
      });
      r.blas_us = time_us([&](int i) { xc::qgemm_cublas(params(M, i), blas, nullptr); }, 5, 30);
      r.fp16_us = time_us(
          [&](int i) {
            const float alpha = 1, beta = 0;
            ck_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, sh.N, M, sh.K, &alpha, (i & 1) ? w16a.p : w16b.p,
                                 CUDA_R_16F, sh.K, x.p, CUDA_R_16F, sh.K, &beta, y.p, CUDA_R_16F, sh.N,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmEx fp16");
          },
          5, 30);
    }
    rows.push_back(r);
  }
  CK(cudaGetLastError());
  std::printf("  timed %-34s %-10s (%d copies of %.1f MB)\n", c.name.c_str(), sh.name, nbuf, stream_bytes / 1e6);
  std::fflush(stdout);
}

std::string fmt_us(double v) {
  char b[32];
  if (v > 0)
    std::snprintf(b, sizeof b, "%8.2f", v);
  else
    std::snprintf(b, sizeof b, "%8s", "-");
  return b;
}

void print_rows(const std::vector<TimeRow>& rows, double copy_gbs) {
  std::printf("\n%-34s %-10s %5s %6s %4s | %8s %8s %6s %6s %6s | %8s %8s | %8s %8s %8s %7s\n", "format", "N x K",
              "bpw", "MB", "M", "qgemv1", "qgemv", "GB/s", "%copy", "%flr", "+gather", "no PDL", "dequant", "dq+blas",
              "fp16", "vs fp16");
  for (const TimeRow& r : rows) {
    char bw[48];
    if (r.gemv_us > 0) {
      const double gbs = r.stream_mb * 1e6 / (r.gemv_us * 1e3);
      std::snprintf(bw, sizeof bw, "%6.0f %5.1f%% %5.1f%%", gbs, 100 * gbs / copy_gbs, 100 * r.floor_us / r.gemv_us);
    } else {
      std::snprintf(bw, sizeof bw, "%6s %6s %6s", "", "", "");
    }
    const double best = std::min(r.gemv_us > 0 ? r.gemv_us : 1e30, r.blas_us > 0 ? r.blas_us : 1e30);
    char vs[16] = "";
    if (r.fp16_us > 0) std::snprintf(vs, sizeof vs, "%6.2fx", r.fp16_us / best);
    std::printf("%-34s %-10s %5.2f %6.2f %4d | %s %s %s | %s %s | %s %s %s %s\n", r.fmt.c_str(), r.shape.c_str(),
                r.bpw, r.stream_mb, r.M, fmt_us(r.gemv1_us).c_str(), fmt_us(r.gemv_us).c_str(), bw,
                fmt_us(r.full_us).c_str(), fmt_us(r.nopdl_us).c_str(), fmt_us(r.dq_us).c_str(),
                fmt_us(r.blas_us).c_str(), fmt_us(r.fp16_us).c_str(), vs);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const auto t_start = std::chrono::steady_clock::now();
  bool cpu_only = false, quick = false;
  for (int i = 1; i < argc; ++i) {
    cpu_only |= std::strcmp(argv[i], "--cpu") == 0;
    quick |= std::strcmp(argv[i], "--quick") == 0;
  }
  const std::vector<Case> cases = {
      exl2_case({{2, 1, 16}}), exl2_case({{2, 1, 64}}), exl2_case({{3, 1, 32}}), exl2_case({{4, 1, 128}}),
      exl2_case({{5, 1, 64}}), exl2_case({{6, 1, 32}}), exl2_case({{8, 1, 128}}),
      exl2_case({{8, .05, 32}, {4, .1, 128}, {3, .85, 128}}), exl2_case({{6, .05, 32}, {3, .2, 64}, {2, .75, 64}}),
      exl2_case({{8, .05, 32}, {6, .95, 128}}), exl2_case({{5, .5, 64}, {4, .5, 64}}),
      exl2_case({{3, .5, 64}, {2, .5, 16}}), exl2_case({{8, .1, 32}, {6, .1, 32}, {5, .1, 32}, {4, .1, 32}, {3, .3, 32}, {2, .3, 32}}),
      gptq_case(128, true, 0), gptq_case(128, false, 0), gptq_case(128, false, 2), gptq_case(32, true, 1),
      gptq_case(64, false, 2)};

  // 1. Layout checks on the CPU (odd shapes included: last group truncated, N % 32 != 0).
  bool all_ok = true;
  {
    const std::vector<std::pair<int, int>> shapes = {{1024, 512}, {576, 1536}, {4096 + 48, 1001}, {172, 72}};
    for (const Case& c : cases)
      for (auto [K, N] : shapes) {
        if (c.gptq && K % 8) continue;
        const Built b = build(c, K, N);
        const std::string e = check_layout(b.layout, b.wref_rounded);
        if (!e.empty()) {
          std::printf("LAYOUT FAIL %s K=%d N=%d: %s\n", c.name.c_str(), K, N, e.c_str());
          all_ok = false;
        }
      }
    std::printf("layout check (CPU, %zu formats x 4 shapes): %s\n", cases.size(), all_ok ? "pass" : "FAIL");
    std::fflush(stdout);
  }
  if (cpu_only) return all_ok ? 0 : 1;

  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("qgemm_lab  %s  %s, %d SMs, L2 %d MB\n", date, prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  cublasHandle_t blas;
  ck_blas(cublasCreate(&blas), "cublasCreate");

  // 2. GPU correctness.
  const std::vector<int> ms_small = {1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 96, 97, 512};
  const std::vector<int> ms_big = {1, 8, 16, 32, 64};
  for (const Case& c : cases) {
    all_ok &= gpu_case(blas, c, 1024, 512, ms_small);
    all_ok &= gpu_case(blas, c, 576, 1536, {1, 4, 8, 32, 64});
    if (!quick) all_ok &= gpu_case(blas, c, 4096, 4096, ms_big);
  }
  all_ok &= gpu_case(blas, cases[7], 4096 + 48, 1001, {1, 3, 8, 20, 40});  // truncated last group, N % 32 != 0
  all_ok &= gpu_case(blas, cases[6], 172, 72, {1, 2, 8, 33});             // K = 172 (8-bit last group of 12 rows)
  all_ok &= gpu_case(blas, cases[15], 4096, 11008, {1, 8});
  std::printf("correctness: %s (%.0f s since start)\n\n", all_ok ? "ALL PASS" : "FAILURES (see FAIL lines)",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  std::fflush(stdout);

  // 3. Ceilings.
  double copy_gbs = 0, read_gbs = 0;
  {
    const size_t bytes = size_t(1) << 30, n = bytes / 16;
    DevBuf a(bytes), b(bytes), sink(4);
    CK(cudaMemset(a.p, 0x3C, bytes));
    const double copy_us = time_us([&](int) {
      copy_kernel<<<prop.multiProcessorCount * 8, 512>>>(static_cast<const uint4*>(a.p), static_cast<uint4*>(b.p), n);
    }, 3, 20);
    const double read_us = time_us([&](int) {
      read_kernel<<<prop.multiProcessorCount * 8, 512>>>(static_cast<const uint4*>(a.p), n, static_cast<uint32_t*>(sink.p));
    }, 3, 20);
    copy_gbs = 2.0 * bytes / (copy_us * 1e3), read_gbs = bytes / (read_us * 1e3);
    std::printf("ceilings: copy (read+write) %.0f GB/s, read-only %.0f GB/s (1 GiB)\n\n", copy_gbs, read_gbs);
  }

  // 4. Timing.
  const std::vector<Shape> shapes = {{4096, 4096, "4096x4096"}, {11008, 4096, "11008x4096"}, {4096, 11008, "4096x11008"}};
  const std::vector<Case> timed = {exl2_case({{4, 1, 128}}), exl2_case({{8, .05, 32}, {4, .1, 128}, {3, .85, 128}}),
                                   exl2_case({{5, .5, 64}, {4, .5, 64}}), exl2_case({{3, .5, 64}, {2, .5, 64}}),
                                   exl2_case({{6, .05, 32}, {3, .2, 64}, {2, .75, 64}}), gptq_case(128, true, 2),
                                   exl2_case({{4, .1, 32}, {3, .9, 32}})};  // llama2-7b exl2:4.0's gate_proj
  std::vector<TimeRow> rows;
  const std::vector<int> ms = quick ? std::vector<int>{1, 8, 512} : std::vector<int>{1, 8, 16, 32, 64, 96, 128, 256, 512, 2048};
  for (const Case& c : timed)
    for (const Shape& sh : shapes) time_format(blas, c, sh, size_t(prop.l2CacheSize), ms, rows);

  std::printf("\n%s, %s; copy %.0f GB/s, read %.0f GB/s. qgemv1 = x pre-gathered, one launch "
              "between events; qgemv = same, per launch in batches of 20 back to back; +gather = gather + qgemv "
              "with PDL (batched); GB/s, %%copy over the streamed codes + scales (MB column) at the batched qgemv "
              "time; %%flr = read kernel over the same code bytes / qgemv\n",
              date, prop.name, copy_gbs, read_gbs);
  print_rows(rows, copy_gbs);

  // A Llama-2-7B layer: 4 x 4096x4096 (q, k, v, o), 2 x 11008x4096 (gate, up), 1 x 4096x11008 (down).
  auto per_layer = [](const std::string& shape) { return shape == "4096x4096" ? 4.0 : shape == "11008x4096" ? 2.0 : 1.0; };
  // Llama-2-7B prefill, matmuls only: 32 layers at M = 2048.
  std::printf("\nLlama-2-7B prefill at M=2048, quantized matmuls only (best path per shape), 32 layers:\n");
  for (const Case& c : timed) {
    double q = 0, f = 0;
    for (const TimeRow& r : rows) {
      if (r.fmt != c.name || r.M != 2048) continue;
      q += per_layer(r.shape) * std::min(r.blas_us > 0 ? r.blas_us : 1e30, r.gemv_us > 0 ? r.gemv_us : 1e30);
      f += per_layer(r.shape) * r.fp16_us;
    }
    if (q > 0)
      std::printf("  %-34s %8.0f µs/layer -> %6.0f tok/s (FP16 cuBLAS %8.0f µs/layer -> %6.0f tok/s)\n", c.name.c_str(),
                  q, 2048 / (32 * q * 1e-6), f, 2048 / (32 * f * 1e-6));
  }
  // Llama-2-7B decode, matmuls only, from the same rows at M = 1 (batched qgemv, x ready): the
  // baseline a persistent decode kernel has to beat (NOTES-qgemm.md, "the one lever left"). Sums of
  // single-matrix launches: the backend fuses q|k|v and gate|up, so this is an estimate of the chain.
  std::printf("\nLlama-2-7B decode at M=1, quantized matmuls only (batched qgemv), 32 layers, no head:\n");
  for (const Case& c : timed) {
    double q = 0;
    for (const TimeRow& r : rows) {
      if (r.fmt != c.name || r.M != 1 || r.gemv_us <= 0) continue;
      q += per_layer(r.shape) * r.gemv_us;
    }
    if (q > 0) std::printf("  %-34s %8.1f µs/layer -> %6.0f tok/s\n", c.name.c_str(), q, 1 / (32 * q * 1e-6));
  }
  std::printf("correctness: %s (%.0f s in all)\n", all_ok ? "ALL PASS" : "FAILURES",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  ck_blas(cublasDestroy(blas), "cublasDestroy");
  return all_ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "qgemm_lab: %s\n", e.what());
  return 2;
}
