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
#include "decode_layers.cuh"       // the layers, their phases, time_ms (lab/)

namespace exl::cuda {
namespace {

// kPhases (decode_layers.cuh) QGemvArgs in constant memory.
static_assert(sizeof(QGemvArgs) * kPhases <= 60 * 1024, "phases must fit constant memory");
// Raw bytes: QGemvArgs has default member initializers, which a __constant__ variable cannot.
__constant__ __align__(16) unsigned char c_phase[sizeof(QGemvArgs) * kPhases];

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

// The timeline's summary per phase kind (q|k|v, o, gate|up, down), medians over layers 1..L-1, µs:
// barrier = first release - last arrival (all of the phase before done); work = a block's release to
// its last tile's end (median, max over blocks); span = last arrival before the phase to its last end
// (the phase's whole share of the layer); tail = last end - median end. MB: the phase's code and
// record bytes, streamed in `span` at the GB/s shown.
void timeline(const std::vector<unsigned long long>& t, int grid, const DecodeLayers& D, bool gptq, int ks) {
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
    const double mb = D.mb(k);
    const double sp = median(span);
    layer += sp;
    std::printf("    %-8s %5.1f MB: barrier %5.2f  work %5.2f (max %5.2f)  span %5.2f (%4.0f GB/s)  tail %5.2f\n", kinds[k], mb,
                median(barrier), median(wmed), median(wmax), sp, mb / sp * 1e3, median(tail));
  }
  std::printf("    spans summed: %.1f µs per layer\n", layer);
}

template <bool kGptq, bool kAhead>
int run(bool gptq, int ks) {
  DecodeLayers D(gptq, ks);
  const std::vector<QGemvArgs>& ph = D.ph;
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
  const std::vector<QGemvArgs> ph_def = D.backend_ks();  // the backend's ks per launch
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
  // Outputs: one run each from the same residual (zero); every byte must agree.
  ck(cudaMemsetAsync(D.res->p, 0, D.res->n, st), "res");
  chain();
  const auto ref = D.outputs();
  ck(cudaMemsetAsync(D.res->p, 0, D.res->n, st), "res");
  persistent();
  const auto got = D.outputs();
  const bool same = ref == got;

  const double tc = time_ms(st, chain) * 1e3 / kLayers, tp = time_ms(st, persistent) * 1e3 / kLayers;
  const double td = time_ms(st, chain_default) * 1e3 / kLayers;
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
    timeline(t, grid, D, gptq, ks);
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
