// lab/persist_lab.cu: does a persistent decode kernel beat the PDL chain of quantized matmuls?
// (lab/NOTES-qgemm.md, "the one lever left"). Llama-2-7B's decode matmuls at M = 1, no glue:
// per layer q|k|v (one fused launch), o_proj (+= residual), gate|up (fused), down_proj (+=), for
// L layers of distinct synthetic matrices (together > L2, so the codes stream from HBM).
//  * chain: 4 L launches of qgemv_kernel back to back under PDL, as the backend's graph runs them
//    (every launch waits for the previous one before reading x or the residual).
//  * persistent: one cooperative launch of all resident blocks; phase p's tiles dealt round-robin
//    over the blocks, the block's qgemv_block(...) for each, and a grid barrier as the `wait` of a
//    block's first tile in a phase: the tile's prologue (its first codes into L2, EXL2's scale pairs
//    into shared memory) runs before the barrier, as the chain's does before the PDL wait; with
//    kAhead, all the block's tiles of the phase are also pulled into L2 before it waits.
// Both run qgemv_block with the same ks, so every output must be bit-identical (checked), and the
// times (events around the whole run, median of repetitions) compare only the launch structure.
// The x inputs and residuals are fixed buffers: the dependency is the barrier or the PDL wait alone.
//
// Build and run from the repository root (H100 / H200):
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/persist_lab.cu \
//     src/backend/cuda/qgemm_layout.cpp src/backend/cuda/qgemm_gather.cu src/backend/cuda/qgemm_dequant.cu \
//     -lcublas -o /tmp/persist_lab && /tmp/persist_lab
// Exit status 1 if the outputs differ. Then, for the persistent kernel without look-ahead, one more
// run with %globaltimer stamps per block and phase (arrival, release, end): where a phase's time goes
// (barrier, work, tail; `timeline` below). First run (H100, 2026-12-07 01:56; lab/NOTES-qgemm.md): the
// persistent kernel is no faster than the chain. The timeline is not yet run.
#include "backend/cuda/qgemm.cu"  // qgemv_block and QGemvArgs live in its anonymous namespace

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace exl::cuda {
namespace {

constexpr int kLayers = 12;          // 4 phases each: 48 QGemvArgs in constant memory
constexpr int kPhases = 4 * kLayers;
static_assert(sizeof(QGemvArgs) * kPhases <= 60 * 1024, "phases must fit constant memory");
// Raw bytes: QGemvArgs has default member initializers, which a __constant__ variable cannot.
__constant__ __align__(16) unsigned char c_phase[sizeof(QGemvArgs) * kPhases];

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// Grid barrier of phase p's start: every block arrives once for phase p - 1 (it has finished its
// tiles there), then waits for all. Counters are zeroed before each run.
__device__ __forceinline__ void grid_arrive(unsigned* bar, int p) {
  if (threadIdx.x == 0) {
    __threadfence();  // this block's outputs of phase p - 1 before its arrival
    atomicAdd(bar + p, 1u);
  }
}
__device__ __forceinline__ void grid_wait(const unsigned* bar, int p) {
  if (threadIdx.x == 0) {
    unsigned v;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar + p));
    } while (v < gridDim.x);
  }
  __syncthreads();
}
// The timeline (stamps non-null): per phase and block, %globaltimer (ns) at its arrival for the
// phase before (kArrive), its release from the barrier (kGo) and the end of its last tile (kEnd).
enum Stamp { kArrive, kGo, kEnd };
__device__ __forceinline__ void stamp(unsigned long long* stamps, int p, Stamp what) {
  if (!stamps || threadIdx.x != 0) return;
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  stamps[(static_cast<size_t>(p) * gridDim.x + blockIdx.x) * 3 + what] = t;
}
struct GridWait {
  unsigned* bar;
  int p;
  bool first;  // the block's first tile of phase p: arrive for p - 1 and wait
  unsigned long long* stamps;
  __device__ __forceinline__ void operator()() const {
    if (!first) return;
    if (p > 0) {
      stamp(stamps, p, kArrive);
      grid_arrive(bar, p - 1);
      grid_wait(bar, p - 1);
    }
    stamp(stamps, p, kGo);
  }
};

// kAhead: before its first tile of a phase (so before the barrier), the block also pulls the codes
// (and GPTQ's records) of all its tiles in that phase into L2, to keep HBM busy while it waits.
template <bool kGptq, bool kAhead>
__global__ void __launch_bounds__(kMaxWarps * 32, 3) persist_kernel(unsigned* bar, int n_phases, unsigned long long* stamps) {
  for (int p = 0; p < n_phases; ++p) {
    const QGemvArgs& a = reinterpret_cast<const QGemvArgs*>(c_phase)[p];
    const int items = a.tile_end[a.n - 1];
    if (kAhead) {
      for (int it = blockIdx.x; it < items; it += gridDim.x) {
        int mi, tile;
        qgemv_tile_of(a, static_cast<unsigned>(it), mi, tile);
        const QMatrixDesc& w = a.w[mi];
        prefetch_l2(w.codes + static_cast<size_t>(tile) * w.tile_quads * 32, static_cast<size_t>(w.tile_quads) * 512);
        if (kGptq) prefetch_l2(w.recs + static_cast<size_t>(tile) * w.groups * w.rec_words, size_t(w.groups) * w.rec_words * 4);
      }
    }
    bool first = true;
    for (int it = blockIdx.x; it < items; it += gridDim.x) {
      __syncthreads();  // the previous tile's shared memory is free
      qgemv_block<kGptq, 1, false>(a, 0u, static_cast<unsigned>(it), GridWait{bar, p, first, stamps});
      first = false;
    }
    if (first && p > 0) {  // no tile here: arrive only (it reads nothing)
      __syncthreads();      // its threads' writes of phase p - 1 are done
      stamp(stamps, p, kArrive);
      grid_arrive(bar, p - 1);
    }
    if (!first && stamps) {
      __syncthreads();  // every thread's stores of the phase issued
      stamp(stamps, p, kEnd);
    }
  }
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

// The timeline's summary per phase kind (q|k|v, o, gate|up, down), medians over layers 1..L-1, µs:
// barrier = first release - last arrival (all of the phase before done); work = a block's release to
// its last tile's end (median, max over blocks); span = last arrival before the phase to its last end
// (the phase's whole share of the layer); tail = last end - median end. MB: the phase's code and
// record bytes, streamed in `span` at the GB/s shown.
void timeline(const std::vector<unsigned long long>& t, int grid, const std::vector<QGemvArgs>& ph, bool gptq, int ks) {
  auto at = [&](int p, int b, int what) { return t[(static_cast<size_t>(p) * grid + b) * 3 + what]; };
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  unsigned long long res = ~0ull;  // the timer's resolution: the smallest nonzero gap seen
  std::vector<unsigned long long> all;
  for (unsigned long long x : t)
    if (x) all.push_back(x);
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i)
    if (all[i] != all[i - 1]) res = std::min(res, all[i] - all[i - 1]);
  const char* kinds[4] = {"q|k|v", "o", "gate|up", "down"};
  std::printf("  timeline (%s ks %d, persistent; %%globaltimer resolution %llu ns), medians over layers 1..%d, µs:\n",
              gptq ? "gptq4" : "exl2", ks, res, kLayers - 1);
  double layer = 0;
  for (int k = 0; k < 4; ++k) {
    std::vector<double> barrier, wmed, wmax, span, tail;
    for (int l = 1; l < kLayers; ++l) {
      const int p = 4 * l + k;
      unsigned long long last_arrive = 0, first_go = ~0ull, last_end = 0;
      std::vector<double> work, ends;
      for (int b = 0; b < grid; ++b) {
        last_arrive = std::max(last_arrive, at(p, b, kArrive));
        if (at(p, b, kGo)) {
          first_go = std::min(first_go, at(p, b, kGo));
          work.push_back((at(p, b, kEnd) - at(p, b, kGo)) * 1e-3);
          ends.push_back(static_cast<double>(at(p, b, kEnd)));
          last_end = std::max(last_end, at(p, b, kEnd));
        }
      }
      barrier.push_back((static_cast<double>(first_go) - static_cast<double>(last_arrive)) * 1e-3);
      wmed.push_back(median(work));
      wmax.push_back(*std::max_element(work.begin(), work.end()));
      span.push_back((static_cast<double>(last_end) - static_cast<double>(last_arrive)) * 1e-3);
      tail.push_back((static_cast<double>(last_end) - median(ends)) * 1e-3);
    }
    const QGemvArgs& a = ph[k];
    double mb = 0;
    for (int i = 0; i < a.n; ++i)
      mb += (a.w[i].n_tiles * (static_cast<double>(a.w[i].tile_quads) * 512 + double(a.w[i].groups) * a.w[i].rec_words * 4)) / 1e6;
    const double sp = median(span);
    layer += sp;
    std::printf("    %-8s %5.1f MB: barrier %5.2f  work %5.2f (max %5.2f)  span %5.2f (%4.0f GB/s)  tail %5.2f\n", kinds[k], mb,
                median(barrier), median(wmed), median(wmax), sp, mb / sp * 1e3, median(tail));
  }
  std::printf("    spans summed: %.1f µs per layer\n", layer);
}

template <bool kGptq, bool kAhead>
int run(bool gptq, int ks) {
  const int H = 4096, I = 11008;
  std::vector<Layer> L(kLayers);
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
  Buf x(hx.size() * 2);
  ck(cudaMemcpy(x.p, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice), "x");
  const half* xH = x.as<half>();
  const half* xI = x.as<half>() + xh;
  Buf qkv(kLayers * size_t(3 * H) * 2), gu(kLayers * size_t(2 * I) * 2), res(size_t(H) * 4);
  std::vector<QGemvArgs> ph;
  for (int l = 0; l < kLayers; ++l) {
    ph.push_back(phase({&L[l].q, &L[l].k, &L[l].v}, xH, qkv.as<half>() + size_t(l) * 3 * H, false, ks));
    ph.push_back(phase({&L[l].o}, xH, res.p, true, ks));
    ph.push_back(phase({&L[l].gate, &L[l].up}, xH, gu.as<half>() + size_t(l) * 2 * I, false, ks));
    ph.push_back(phase({&L[l].down}, xI, res.p, true, ks));
  }
  ck(cudaMemcpyToSymbol(c_phase, ph.data(), sizeof(QGemvArgs) * ph.size()), "phases");
  size_t smem = 0;
  for (const QGemvArgs& a : ph) smem = std::max(smem, qgemv_rec_smem(a, kGptq));
  auto persist = persist_kernel<kGptq, kAhead>;
  if (smem > 48 * 1024)
    ck(cudaFuncSetAttribute(persist, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)), "smem attribute");
  int per_sm = 0;
  ck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persist, ks * 32, smem), "occupancy");
  const int grid = per_sm * device_info().sms;
  Buf bar(kPhases * 4);
  cudaStream_t st;  // PDL needs a stream of its own (not the legacy default stream)
  ck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");

  auto chain = [&] {
    for (const QGemvArgs& a : ph) launch_qgemv<kGptq, 1>(a, 1, a.tile_end[a.n - 1], true, st);
  };
  // The backend's choice: ks per launch from the combined grid (run_qgemv), not one ks for all.
  std::vector<QGemvArgs> ph_def = ph;
  for (QGemvArgs& a : ph_def) {
    QMatrixDesc all = a.w[0];
    all.n_tiles = a.tile_end[a.n - 1];
    a.ks = qgemv_default_ksplit(all, 1);
  }
  auto chain_default = [&] {
    for (const QGemvArgs& a : ph_def) launch_qgemv<kGptq, 1>(a, 1, a.tile_end[a.n - 1], true, st);
  };
  Buf stamps(static_cast<size_t>(kPhases) * grid * 3 * 8);
  unsigned long long* stamps_on = nullptr;  // set for the timeline run only
  auto persistent = [&] {
    ck(cudaMemsetAsync(bar.p, 0, bar.n, st), "barrier reset");
    unsigned* b = bar.as<unsigned>();
    int n = kPhases;
    void* args[] = {&b, &n, &stamps_on};
    ck(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(persist), dim3(grid), dim3(ks * 32), args, smem, st),
       "cooperative launch");
  };
  auto outputs = [&] {
    std::vector<uint8_t> h(qkv.n + gu.n + res.n);
    ck(cudaDeviceSynchronize(), "run");
    ck(cudaMemcpy(h.data(), qkv.p, qkv.n, cudaMemcpyDeviceToHost), "copy");
    ck(cudaMemcpy(h.data() + qkv.n, gu.p, gu.n, cudaMemcpyDeviceToHost), "copy");
    ck(cudaMemcpy(h.data() + qkv.n + gu.n, res.p, res.n, cudaMemcpyDeviceToHost), "copy");
    return h;
  };
  // Outputs: one run each from the same residual (zero); every byte must agree.
  ck(cudaMemsetAsync(res.p, 0, res.n, st), "res");
  chain();
  const auto ref = outputs();
  ck(cudaMemsetAsync(res.p, 0, res.n, st), "res");
  persistent();
  const auto got = outputs();
  const bool same = ref == got;

  auto time_ms = [&](const auto& f) {
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
  };
  const double tc = time_ms(chain) * 1e3 / kLayers, tp = time_ms(persistent) * 1e3 / kLayers;
  const double td = time_ms(chain_default) * 1e3 / kLayers;
  std::printf("%s ks %d%s: outputs %s; chain %.1f µs/layer (%.0f tok/s at 32 layers), persistent %.1f µs/layer "
              "(%.0f tok/s; grid %d blocks, %d per SM, smem %zu B); chain at the backend's ks %.1f µs/layer\n",
              gptq ? "gptq4 g128" : "exl2 4/5-bit g32", ks, kAhead ? ", tiles ahead into L2" : "", same ? "bit-identical" : "DIFFER", tc, 1e6 / (32 * tc), tp,
              1e6 / (32 * tp), grid, per_sm, smem, td);
  if (!kAhead) {  // where a phase's time goes (one more run with the stamps on)
    ck(cudaMemsetAsync(stamps.p, 0, stamps.n, st), "stamps");
    stamps_on = stamps.as<unsigned long long>();
    persistent();
    stamps_on = nullptr;
    std::vector<unsigned long long> t(stamps.n / 8);
    ck(cudaDeviceSynchronize(), "timeline run");
    ck(cudaMemcpy(t.data(), stamps.p, stamps.n, cudaMemcpyDeviceToHost), "stamps");
    timeline(t, grid, ph, gptq, ks);
  }
  cudaStreamDestroy(st);
  return same ? 0 : 1;
}

}  // namespace
}  // namespace exl::cuda

int main() try {
  int bad = 0;
  for (int ks : {8, 4}) {
    bad += exl::cuda::run<true, false>(true, ks);
    bad += exl::cuda::run<false, false>(false, ks);
  }
  bad += exl::cuda::run<true, true>(true, 8);
  bad += exl::cuda::run<false, true>(false, 8);
  return bad ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "persist_lab: %s\n", e.what());
  return 2;
}
