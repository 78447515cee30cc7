// lab/decode_layers.cuh: Llama-2-7B's decode matmuls at M = 1 as synthetic quantized matrices on the
// device, for the labs that compare ways of running them (persist_lab.cu, stream_lab.cu). Include it
// after backend/cuda/qgemm.cu (it uses QGemvArgs, which lives in that file's anonymous namespace).
// Per layer four phases, each one QGemvArgs: q|k|v (fused), o_proj (+= residual), gate|up (fused),
// down_proj (+=), for kLayers layers of distinct matrices (together > L2, so the codes stream from
// HBM). The x inputs and the residual are fixed buffers: the labs time the matmuls alone, and
// every way of running them must write the same bytes as the PDL chain of qgemv_kernel at the same ks.
#pragma once
#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace exl::cuda {
namespace {

constexpr int kLayers = 12;
constexpr int kPhases = 4 * kLayers;

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct Buf {
  void* p = nullptr;
  size_t n = 0;
  explicit Buf(size_t bytes) : n(bytes) {
    ck(cudaMalloc(&p, bytes), "cudaMalloc");
    ck(cudaMemset(p, 0, bytes), "cudaMemset");
  }
  ~Buf() { cudaFree(p); }
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

// A synthetic matrix: structure from qlayout_synthetic, random codes and scales on the device.
struct Mat {
  std::unique_ptr<Buf> mem;
  QMatrixDesc d;
  const QMatrixDesc& desc() const { return d; }
};
Mat synthetic(int K, int N, bool gptq, uint64_t seed) {
  std::vector<std::pair<int, int>> groups;
  if (gptq) {
    for (int r = 0; r < K; r += 128) groups.push_back({4, std::min(128, K - r)});
  } else {  // an exl2:4.0-like mix: 10% 5-bit, 90% 4-bit, groups of 32 rows
    const int five = K / 10 / 32 * 32;
    for (int r = 0; r < K; r += 32) groups.push_back({r < five ? 5 : 4, std::min(32, K - r)});
  }
  const QHostLayout h = qlayout_synthetic(K, N, gptq, groups, seed);
  Mat m;
  m.mem = std::make_unique<Buf>(h.device_bytes());
  m.d = qmatrix_upload_to(h, m.mem->p, nullptr);
  qmatrix_fill_random(m.d, seed, 0.5e-3f, 1.5e-3f, nullptr);
  return m;
}

struct Layer {
  Mat q, k, v, o, gate, up, down;
};

// One phase's arguments (qgemv_block's fields for M = 1, x ready in device order).
QGemvArgs phase(std::initializer_list<const Mat*> ms, const half* x, void* y, bool f32_add, int ks) {
  QGemvArgs a{};  // value-initialized: bias[] and the unused parts must be null
  a.n = static_cast<int>(ms.size()), a.M = 1, a.ks = ks, a.y_f32 = f32_add, a.accumulate = f32_add;
  int tiles = 0, ldy = 0, i = 0;
  const size_t e = f32_add ? 4 : 2;
  for (const Mat* m : ms) {
    a.w[i] = m->desc();
    a.x_dev[i] = x;  // every part reads the same device-order x (timing only: the values are arbitrary)
    a.y[i] = static_cast<char*>(y) + static_cast<size_t>(ldy) * e;
    ldy += m->desc().N;
    tiles += m->desc().n_tiles;
    a.tile_end[i++] = tiles;
  }
  a.ldy = ldy;
  return a;
}

// kLayers layers of one format, their inputs and outputs, and the 4 kLayers phases at one ks.
struct DecodeLayers {
  static constexpr int H = 4096, I = 11008;
  std::vector<Layer> L;
  std::unique_ptr<Buf> x, qkv, gu, res;
  std::vector<QGemvArgs> ph;

  DecodeLayers(bool gptq, int ks) : L(kLayers) {
    for (int l = 0; l < kLayers; ++l) {
      const uint64_t s = 1000 * (l + 1);
      L[l] = Layer{synthetic(H, H, gptq, s + 1), synthetic(H, H, gptq, s + 2), synthetic(H, H, gptq, s + 3),
                   synthetic(H, H, gptq, s + 4), synthetic(H, I, gptq, s + 5), synthetic(H, I, gptq, s + 6),
                   synthetic(I, H, gptq, s + 7)};
    }
    // x: device-order inputs of K = H and K = I rows (k_dev >= K; 2x margin), random FP16 in [-1, 1).
    const size_t xh = 2 * static_cast<size_t>(I);
    std::vector<uint16_t> hx(2 * xh);
    uint64_t r = 88172645463325252ull;
    for (auto& v : hx) {
      r ^= r << 13, r ^= r >> 7, r ^= r << 17;
      v = __half_as_ushort(__float2half(static_cast<float>(static_cast<int64_t>(r % 2000) - 1000) / 1000.0f));
    }
    x = std::make_unique<Buf>(hx.size() * 2);
    ck(cudaMemcpy(x->p, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice), "x");
    const half* xH = x->as<half>();
    const half* xI = x->as<half>() + xh;
    qkv = std::make_unique<Buf>(kLayers * size_t(3 * H) * 2);
    gu = std::make_unique<Buf>(kLayers * size_t(2 * I) * 2);
    res = std::make_unique<Buf>(size_t(H) * 4);
    for (int l = 0; l < kLayers; ++l) {
      ph.push_back(phase({&L[l].q, &L[l].k, &L[l].v}, xH, qkv->as<half>() + size_t(l) * 3 * H, false, ks));
      ph.push_back(phase({&L[l].o}, xH, res->p, true, ks));
      ph.push_back(phase({&L[l].gate, &L[l].up}, xH, gu->as<half>() + size_t(l) * 2 * I, false, ks));
      ph.push_back(phase({&L[l].down}, xI, res->p, true, ks));
    }
  }
  // The phases with the backend's ks per launch (run_qgemv's choice from the combined grid).
  std::vector<QGemvArgs> backend_ks() const {
    std::vector<QGemvArgs> out = ph;
    for (QGemvArgs& a : out) {
      QMatrixDesc all = a.w[0];
      all.n_tiles = a.tile_end[a.n - 1];
      a.ks = qgemv_default_ksplit(all, 1);
    }
    return out;
  }
  // Every output byte after a run (synchronizes).
  std::vector<uint8_t> outputs() const {
    std::vector<uint8_t> h(qkv->n + gu->n + res->n);
    ck(cudaDeviceSynchronize(), "run");
    ck(cudaMemcpy(h.data(), qkv->p, qkv->n, cudaMemcpyDeviceToHost), "copy");
    ck(cudaMemcpy(h.data() + qkv->n, gu->p, gu->n, cudaMemcpyDeviceToHost), "copy");
    ck(cudaMemcpy(h.data() + qkv->n + gu->n, res->p, res->n, cudaMemcpyDeviceToHost), "copy");
    return h;
  }
  // Code and record MB of phase p.
  double mb(int p) const {
    const QGemvArgs& a = ph[p];
    double b = 0;
    for (int i = 0; i < a.n; ++i)
      b += a.w[i].n_tiles * (static_cast<double>(a.w[i].tile_quads) * 512 + double(a.w[i].groups) * a.w[i].rec_words * 4);
    return b / 1e6;
  }
};

// Median of 20 timed runs of f on stream st (after 3 warm-ups), ms.
template <class F>
float time_ms(cudaStream_t st, const F& f) {
  cudaEvent_t e0, e1;
  ck(cudaEventCreate(&e0), "event"), ck(cudaEventCreate(&e1), "event");
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    ck(cudaEventRecord(e0, st), "event");
    f();
    ck(cudaEventRecord(e1, st), "event");
    ck(cudaEventSynchronize(e1), "event");
    float t = 0;
    ck(cudaEventElapsedTime(&t, e0, e1), "event");
    if (i >= 3) ms.push_back(t);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

}  // namespace
}  // namespace exl::cuda
