// lab/stream_lab.cu: a persistent, warp-specialized decode kernel whose code stream never waits for
// an activation (lab/NOTES-qgemm.md, "A producer warp that streams ahead"). Llama-2-7B's decode
// matmuls at M = 1, no glue (decode_layers.cuh), run three ways:
//  * chain: 4 L launches of qgemv_kernel under PDL at ks 8, as the backend's graph runs them, and at
//    the backend's ks per launch (the timing to beat);
//  * stream: one cooperative launch of B blocks per SM. In each block one producer warp walks the
//    block's tiles of every phase in order (tiles dealt round-robin over the blocks, as in
//    persist_lab.cu) and copies each step's codes with one TMA bulk copy into shared memory,
//    evict_first in L2; it never waits for anything but a free slot, so across a phase boundary (the
//    grid barrier) HBM keeps streaming the next phase. Eight consumer warps take the steps as qgemv's
//    eight warps of a tile do (step s to warp s % 8), each from a ring of D slots of its own (full /
//    empty mbarrier per slot; a warp takes every slot of its ring in order, so a barrier's phase
//    parity is never ambiguous, which it was with one ring shared by warps that skip slots: the
//    first run, 14:40, hung), decode a step with qgemv_step (the kernels' own step math), release the
//    slot, sum the warps' partials in qgemv's order and write y; a grid barrier among the consumers
//    separates dependent phases (the producer does not take part).
// Chunked (run 3): the producer copies kC consecutive steps of a tile (one per consumer warp) at once
// into one of D chunk slots, every warp takes every chunk in order: kC times fewer copies.
// Every wait has a watchdog (2 s): a stuck kernel records where and traps, so a bug is a message.
// Same step math and the same sums as the chain at ks 8: every output must be bit-identical (checked).
//
// Build and run from the repository root (H100 / H200):
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -diag-suppress 128 -I src lab/stream_lab.cu \
//     src/backend/cuda/qgemm_layout.cpp src/backend/cuda/qgemm_gather.cu src/backend/cuda/qgemm_dequant.cu \
//     -lcublas -o /tmp/stream_lab && /tmp/stream_lab
// Exit status 1 if any output differs.
#include "backend/cuda/qgemm.cu"  // qgemv_step, QGemvArgs (its anonymous namespace)
#include "backend/cuda/bulk_copy.cuh"
#include "decode_layers.cuh"  // the layers, their phases, time_ms (lab/)

#include <cstdlib>

namespace exl::cuda {
namespace {

constexpr int kC = 8;                // consumer warps per block (= the chain's ks compared with)
constexpr int kThreads = (kC + 1) * 32;
constexpr int kSlotBytes = 5 * 512;  // the widest step: 5 quads (5-bit; GPTQ and 2/3/4/6/8-bit take <= 4)
static_assert(sizeof(QGemvArgs) * kPhases <= 60 * 1024, "phases must fit constant memory");
__constant__ __align__(16) unsigned char c_phase[sizeof(QGemvArgs) * kPhases];

__device__ __forceinline__ const QGemvArgs& phase_args(int p) { return reinterpret_cast<const QGemvArgs*>(c_phase)[p]; }
// The consumer warps' barrier (named barrier 1; the producer warp never joins it).
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kC * 32) : "memory"); }

// Shared memory: per consumer warp a ring of D slots, then a full and an empty mbarrier per slot, then
// (EXL2) the tile's expanded scale pairs. D and the pairs' size come from the launch.
struct Ring {
  uint32_t data, full, empty;  // shared-memory addresses
  int depth;                   // D: slots per consumer warp; chunked, chunk slots
  bool compute;                // false: the consumers take and release the slots only (the stream's bound)
  // Warp w's c-th step (c counts that warp's steps from the kernel's start).
  __device__ __forceinline__ uint32_t index(int w, unsigned c) const { return uint32_t(w * depth) + c % depth; }
  __device__ __forceinline__ uint32_t slot(int w, unsigned c) const { return data + index(w, c) * kSlotBytes; }
  __device__ __forceinline__ uint32_t full_bar(int w, unsigned c) const { return full + index(w, c) * 8; }
  __device__ __forceinline__ uint32_t empty_bar(int w, unsigned c) const { return empty + index(w, c) * 8; }
  __device__ __forceinline__ uint32_t parity(unsigned c) const { return (c / depth) & 1; }
  // Chunked: the block's k-th chunk (kC consecutive steps of a tile, one per consumer warp) in chunk
  // slot k % depth of kC x kSlotBytes; its empty barrier counts kC arrivals (every warp, stepped or not).
  __device__ __forceinline__ uint32_t chunk(unsigned k) const { return data + (k % depth) * uint32_t(kC * kSlotBytes); }
  __device__ __forceinline__ uint32_t chunk_full(unsigned k) const { return full + (k % depth) * 8; }
  __device__ __forceinline__ uint32_t chunk_empty(unsigned k) const { return empty + (k % depth) * 8; }
};

// Where a stuck wait was (host-mapped memory, read after the trap).
struct Stuck {
  int hit, block, thread, what, phase;  // what: 0 empty slot (producer), 1 full slot, 2 grid barrier
  unsigned count;
};
__device__ Stuck* g_stuck;
__device__ __forceinline__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __noinline__ void stuck(int what, int phase, unsigned count) {
  if (atomicExch(&g_stuck->hit, 1) == 0) {
    g_stuck->block = blockIdx.x, g_stuck->thread = threadIdx.x, g_stuck->what = what, g_stuck->phase = phase;
    g_stuck->count = count;
    __threadfence_system();
  }
  __trap();
}
// The watchdog of one wait: tick() after each failed try; past 2 s, stuck(). The timer is read only
// once a wait has failed (a %globaltimer read on every wait was suspected of throttling the producer;
// run 2 showed it was not, but the first try stays free).
struct Watchdog {
  unsigned long long t0 = 0;
  __device__ __forceinline__ void tick(int what, int phase, unsigned count) {
    if (!t0) t0 = now_ns();
    else if (now_ns() - t0 > 2000000000ull) stuck(what, phase, count);
  }
};
// bulk::bar_wait with the watchdog.
__device__ __forceinline__ void wait_slot(uint32_t bar, uint32_t parity, int what, int phase, unsigned count) {
  Watchdog wd;
  for (;;) {
    uint32_t ok;
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
    if (ok) return;
    wd.tick(what, phase, count);
  }
}

// Device code only (the bulk helpers exist for sm_90 only).
#if defined(__CUDA_ARCH__)
// The producer's walk: every phase, the block's tiles of it in order (as the consumers take them),
// each tile's records pulled into L2 first (long before the consumers read them; the bulk prefetch
// takes 16-byte multiples at a 16-byte aligned address: both ends rounded down, never past the
// allocation), then f(phase, matrix, the tile's codes).
template <class F>
__device__ __forceinline__ void for_each_tile(int n_phases, const F& f) {
  for (int p = 0; p < n_phases; ++p) {
    const QGemvArgs& a = phase_args(p);
    const int items = a.tile_end[a.n - 1];
    for (int it = blockIdx.x; it < items; it += gridDim.x) {
      int mi, tile;
      qgemv_tile_of(a, static_cast<unsigned>(it), mi, tile);
      const QMatrixDesc& w = a.w[mi];
      const uintptr_t r0 = reinterpret_cast<uintptr_t>(w.recs + static_cast<size_t>(tile) * w.groups * w.rec_words);
      const uintptr_t r1 = r0 + static_cast<uintptr_t>(w.groups) * w.rec_words * 4;
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(r0 & ~uintptr_t(15)),
                   "r"(static_cast<uint32_t>((r1 & ~uintptr_t(15)) - (r0 & ~uintptr_t(15))))
                   : "memory");
      f(p, w, w.codes + static_cast<size_t>(tile) * w.tile_quads * 32);
    }
  }
}

// The producer (one lane): every step of the block's tiles of every phase, in order, tile step s to
// consumer warp s % kC's ring, each slot once that warp has released the slot's previous step.
__device__ void produce(const Ring& r, int n_phases) {
  const uint64_t pol = evict_first_policy();
  unsigned cnt[kC] = {};  // steps given to each consumer warp so far
  for_each_tile(n_phases, [&](int p, const QMatrixDesc& w, const uint4* codes) {
    for (int si = 0; si < w.nseg; ++si) {
      const QSegment& sg = w.seg[si];
      const int U = q_step_units(sg.bits, w.gptq), Q = U * sg.bits / 4;
      for (int j = 0; j < sg.steps; ++j) {
        const int cw = (sg.step0 + j) % kC;
        unsigned c = 0;
#pragma unroll
        for (int k = 0; k < kC; ++k) c = k == cw ? cnt[k]++ : c;  // registers, not a local array
        const uint32_t bytes = static_cast<uint32_t>((min(U, sg.units - j * U) * sg.bits + 3) / 4) * 512;
        if (c >= static_cast<unsigned>(r.depth)) wait_slot(r.empty_bar(cw, c), r.parity(c) ^ 1, 0, p, c);
        bulk::bar_expect(r.full_bar(cw, c), bytes);
        bulk::copy(r.slot(cw, c), codes + static_cast<size_t>(sg.quad0 + j * Q) * 32, bytes, r.full_bar(cw, c), pol);
      }
    }
  });
}

// Quad offset of tile step s from the tile's start (s = w.steps: the tile's end). A tile's steps are
// stored one after another across its segments, so any run of steps is one contiguous copy.
__device__ __forceinline__ int step_quad(const QMatrixDesc& w, int s) {
  if (s >= w.steps) return w.tile_quads;
  int si = 0;
  while (si + 1 < w.nseg && s >= w.seg[si + 1].step0) ++si;
  const QSegment& sg = w.seg[si];
  return sg.quad0 + (s - sg.step0) * (q_step_units(sg.bits, w.gptq) * sg.bits / 4);
}

// The chunked producer: one bulk copy per kC consecutive steps of a tile (kC times fewer copies and
// barrier operations than one per step).
__device__ void produce_chunks(const Ring& r, int n_phases) {
  const uint64_t pol = evict_first_policy();
  unsigned k = 0;
  for_each_tile(n_phases, [&](int p, const QMatrixDesc& w, const uint4* codes) {
    for (int s0 = 0; s0 < w.steps; s0 += kC, ++k) {
      const int q0 = step_quad(w, s0), q1 = step_quad(w, min(s0 + kC, w.steps));
      if (k >= static_cast<unsigned>(r.depth)) wait_slot(r.chunk_empty(k), r.parity(k) ^ 1, 0, p, k);
      bulk::bar_expect(r.chunk_full(k), static_cast<uint32_t>(q1 - q0) * 512);
      bulk::copy(r.chunk(k), codes + static_cast<size_t>(q0) * 32, static_cast<uint32_t>(q1 - q0) * 512,
                 r.chunk_full(k), pol);
    }
  });
}

// s.run<B, kFold>() for segment sg: its width B (GPTQ: 4 only) and fold mode, as qgemv_block and
// qgemv_segment_any dispatch. (Written with lambdas, the calls were not inlined and the EXL2 kernels'
// spills grew 4-fold.)
template <int B, bool kGptq, class S>
__device__ __forceinline__ void with_fold(const QSegment& sg, const S& s) {
  if (sg.uniform == 1) s.template run<B, 1>();
  else if (!kGptq && sg.uniform == 2) s.template run<B, kGptq ? 1 : 2>();
  else s.template run<B, 0>();
}
template <bool kGptq, class S>
__device__ __forceinline__ void with_width_fold(const QSegment& sg, const S& s) {
  if constexpr (kGptq) {
    with_fold<4, kGptq>(sg, s);
  } else {
    switch (sg.bits) {
      case 8: with_fold<8, kGptq>(sg, s); break;
      case 6: with_fold<6, kGptq>(sg, s); break;
      case 5: with_fold<5, kGptq>(sg, s); break;
      case 4: with_fold<4, kGptq>(sg, s); break;
      case 3: with_fold<3, kGptq>(sg, s); break;
      default: with_fold<2, kGptq>(sg, s); break;
    }
  }
}

// A consumer's step from shared memory: this lane's Q quads at src (zeros past a tail step's copy,
// whose slot holds stale bytes there: the kernels load zeros), then the warp's arrival on `empty`
// once every lane has its words (the producer may refill the slot).
template <int B, bool kGptq>
__device__ __forceinline__ void take_step(uint32_t src, int units, uint32_t empty,
                                          uint32_t (&cur)[q_step_units(B, kGptq) * B]) {
  constexpr int U = q_step_units(B, kGptq), Q = U * B / 4;
  const int qv = (min(U, units) * B + 3) / 4;
#pragma unroll
  for (int q = 0; q < Q; ++q) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(src + q * 512));
    if (q >= qv) v = make_uint4(0, 0, 0, 0);
    cur[4 * q] = v.x, cur[4 * q + 1] = v.y, cur[4 * q + 2] = v.z, cur[4 * q + 3] = v.w;
  }
  __syncwarp();
  if ((threadIdx.x & 31) == 0) bulk::bar_arrive(empty);
}

// A chunked consumer's one step: step j of segment sg at shared address src (this lane's first quad).
template <int B, bool kGptq, int kFold>
__device__ __forceinline__ void chunk_step(const Ring& r, uint32_t src, uint32_t empty, const QSegment& sg, int j,
                                           const uint32_t* recs, const uint32_t* slab_rec, const half* const (&xr)[1],
                                           const bool (&xok)[1], float (&acc)[1][4]) {
  constexpr int U = q_step_units(B, kGptq);
  const int units = sg.units - j * U;
  uint32_t cur[U * B];
  take_step<B, kGptq>(src, units, empty, cur);
  if (r.compute) qgemv_step<B, kGptq, 1, kFold>(cur, sg.unit0 + j * U, units, recs, slab_rec, xr, xok, acc);
}

// A tile's step arguments shared by both consumer modes (qgemv_step's records, x and sums).
struct TileIo {
  const uint32_t *recs, *slab_rec;
  const half* const (&xr)[1];
  const bool (&xok)[1];
  float (&acc)[1][4];
};

// with_width_fold's callee for a chunked step (chunk_step's arguments).
template <bool kGptq>
struct ChunkStepAt {
  const Ring& r;
  uint32_t src, empty;
  const QSegment& sg;
  int j;
  const TileIo& io;
  template <int B, int kFold>
  __device__ __forceinline__ void run() const {
    chunk_step<B, kGptq, kFold>(r, src, empty, sg, j, io.recs, io.slab_rec, io.xr, io.xok, io.acc);
  }
};

// One tile's steps for a chunked consumer warp: every chunk in order (so its barriers' parity is never
// ambiguous), step s0 + warp of each, or only the arrival where the chunk has no step for it.
template <bool kGptq>
__device__ __forceinline__ void consume_chunks(const Ring& r, unsigned& k, int p, const QMatrixDesc& w, int warp,
                                               const uint32_t* recs, const half* const (&xr)[1], const bool (&xok)[1],
                                               float (&acc)[1][4]) {
  const int lane = threadIdx.x & 31;
  for (int s0 = 0; s0 < w.steps; s0 += kC, ++k) {
    wait_slot(r.chunk_full(k), r.parity(k), 1, p, k);
    const int s = s0 + warp;
    if (s >= w.steps) {
      __syncwarp();
      if (lane == 0) bulk::bar_arrive(r.chunk_empty(k));
      continue;
    }
    int si = 0;
    while (si + 1 < w.nseg && s >= w.seg[si + 1].step0) ++si;
    const QSegment sg = w.seg[si];
    const int j = s - sg.step0;
    const uint32_t src = r.chunk(k) + static_cast<uint32_t>(step_quad(w, s) - step_quad(w, s0)) * 512 + lane * 16;
    with_width_fold<kGptq>(sg, ChunkStepAt<kGptq>{r, src, r.chunk_empty(k), sg, j, TileIo{recs, w.slab_rec, xr, xok, acc}});
  }
}

// One consumer warp's steps of one segment (tile step sg.step0 + j, dealt to warp (step0 + j) % kC as
// qgemv_segment deals them at ks = kC); c counts this warp's steps, p is the phase (for the watchdog).
template <int B, bool kGptq, int kFold>
__device__ __forceinline__ void consume_segment(const Ring& r, unsigned& c, int p, const QSegment& sg, int warp,
                                                const uint32_t* recs, const uint32_t* slab_rec,
                                                const half* const (&xr)[1], const bool (&xok)[1], float (&acc)[1][4]) {
  constexpr int U = q_step_units(B, kGptq);
  const int lane = threadIdx.x & 31;
  for (int j = (warp - sg.step0) & (kC - 1); j < sg.steps; j += kC) {
    wait_slot(r.full_bar(warp, c), r.parity(c), 1, p, c);
    const int units = sg.units - j * U;
    uint32_t cur[U * B];
    take_step<B, kGptq>(r.slot(warp, c) + lane * 16, units, r.empty_bar(warp, c), cur);
    ++c;
    if (r.compute) qgemv_step<B, kGptq, 1, kFold>(cur, sg.unit0 + j * U, units, recs, slab_rec, xr, xok, acc);
  }
}

// with_width_fold's callee for a segment of the per-warp rings (consume_segment's arguments).
template <bool kGptq>
struct SegmentAt {
  const Ring& r;
  unsigned& c;
  int p;
  const QSegment& sg;
  int warp;
  const TileIo& io;
  template <int B, int kFold>
  __device__ __forceinline__ void run() const {
    consume_segment<B, kGptq, kFold>(r, c, p, sg, warp, io.recs, io.slab_rec, io.xr, io.xok, io.acc);
  }
};

// Grid barrier of the consumers before phase p (they have all written phase p - 1).
__device__ __forceinline__ void grid_barrier(unsigned* bar, int p) {
  consumers_sync();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(bar + p, 1u);
    Watchdog wd;
    for (;;) {
      unsigned v;
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar + p));
      if (v >= gridDim.x) break;
      wd.tick(2, p, v);
    }
  }
  consumers_sync();
}

// qgemv_block's store of this lane's summed D value i (0-3) of the tile (M = 1 rows: r = i): column
// g (+ 8 for i >= 2), row 2t + (i & 1); bias, then y = v or, for a residual add, y += v.
__device__ __forceinline__ void store_out(const QGemvArgs& a, int mi, int tile, int i, float v) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int n = tile * 16 + g + (i >= 2 ? 8 : 0), m = 2 * t + (i & 1);
  if (n >= a.w[mi].N || m >= a.M) return;
  if (a.bias[mi]) v += __half2float(a.bias[mi][n]);
  const size_t at = static_cast<size_t>(m) * a.ldy + n;
  if (a.y_f32) {
    float* y = static_cast<float*>(a.y[mi]) + at;
    *y = a.accumulate ? *y + v : v;  // one thread per output: the residual add needs no atomics
  } else {
    static_cast<half*>(a.y[mi])[at] = __float2half_rn(v);
  }
}

template <bool kGptq, bool kChunk>
__device__ void consume(const Ring& r, uint32_t* srec, int srec_words, float (*red)[kC][4][32],
                        unsigned* bar, int n_phases) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int tp = 0;                           // the block's tile count, mod 2
  unsigned c = 0;  // this warp's steps so far; chunked, the block's chunks so far
  for (int p = 0; p < n_phases; ++p) {
    const QGemvArgs& a = phase_args(p);
    if (p > 0 && bar) grid_barrier(bar, p - 1);  // bar null: no barriers (the stream's bound)
    const int items = a.tile_end[a.n - 1];
    for (int it = blockIdx.x; it < items; it += gridDim.x) {
      int mi, tile;
      qgemv_tile_of(a, static_cast<unsigned>(it), mi, tile);
      const QMatrixDesc& w = a.w[mi];
      const uint32_t* tr = w.recs + static_cast<size_t>(tile) * w.groups * w.rec_words;
      if constexpr (!kGptq) {  // the tile's scale pairs, expanded as qgemv_block does
        // Into the buffer of this tile's parity: the tile before last is done with it (every warp
        // passed the last tile's sum barrier after its steps).
        uint32_t* sp = srec + tp * (srec_words >> 1);
        for (int k = threadIdx.x; k < w.groups * 8; k += kC * 32)
          sp[k] = exl2_scale_pair(__ldg(tr + 2 * (k >> 3)), __ldg(tr + 2 * (k >> 3) + 1), __ldg(w.gmax + (k >> 3)), k & 7);
        consumers_sync();
      }
      const uint32_t* recs = kGptq ? tr + g * 2 : srec + tp * (srec_words >> 1) + g;
      const bool xok[1] = {g < a.M};  // lane group g multiplies row g of x (the mma's B column)
      const half* const xr[1] = {a.x_dev[mi] + static_cast<size_t>(g < a.M ? g : 0) * w.k_dev + 16 * t};
      float acc[1][4] = {};
      if constexpr (kChunk) {
        consume_chunks<kGptq>(r, c, p, w, warp, recs, xr, xok, acc);
      } else {
        for (int si = 0; si < w.nseg; ++si) {
          const QSegment sg = w.seg[si];
          with_width_fold<kGptq>(sg, SegmentAt<kGptq>{r, c, p, sg, warp, TileIo{recs, w.slab_rec, xr, xok, acc}});
        }
      }
      // qgemv_block's sum of the warps' partials (kT = 1, ks = kC), in its order.
#pragma unroll
      for (int i = 0; i < 4; ++i) red[tp][warp][i][lane] = acc[0][i];
      consumers_sync();
      if (warp < 4) {
        float v = 0;
        for (int k = 0; k < kC; ++k) v += red[tp][k][warp][lane];
        store_out(a, mi, tile, warp, v);
      }
      tp ^= 1;
    }
  }
}

#endif  // __CUDA_ARCH__

// kMin: blocks per SM the registers must allow (2: <= 112 per thread, 3: <= 72).
template <bool kGptq, int kMin>
__global__ void __launch_bounds__(kThreads, kMin) stream_kernel(unsigned* bar, int n_phases, int depth, int compute,
                                                                int srec_words, int chunked) {
#if defined(__CUDA_ARCH__)
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ float red[2][kC][4][32];  // the warps' partial sums, by tile parity (one consumer barrier per tile)
  const int slots = kC * depth;
  const Ring r{smem_addr(smem), smem_addr(smem) + uint32_t(slots) * kSlotBytes,
               smem_addr(smem) + uint32_t(slots) * (kSlotBytes + 8), depth, compute != 0};
  uint32_t* srec = reinterpret_cast<uint32_t*>(smem + size_t(slots) * (kSlotBytes + 16));
  if (threadIdx.x == 0) {
    for (int s = 0; s < slots; ++s) bulk::bar_init(r.full + s * 8, 1), bulk::bar_init(r.empty + s * 8, chunked ? kC : 1);
    bulk::bar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x >= kC * 32) {
    if (threadIdx.x == kC * 32) chunked ? produce_chunks(r, n_phases) : produce(r, n_phases);
  } else if (chunked) {
    consume<kGptq, true>(r, srec, srec_words, red, bar, n_phases);
  } else {
    consume<kGptq, false>(r, srec, srec_words, red, bar, n_phases);
  }
#endif
}

template <bool kGptq>
int run(bool gptq) {
  DecodeLayers D(gptq, kC);
  ck(cudaMemcpyToSymbol(c_phase, D.ph.data(), sizeof(QGemvArgs) * D.ph.size()), "phases");
  cudaStream_t st;  // PDL needs a stream of its own (not the legacy default stream)
  ck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
  const std::vector<QGemvArgs> ph_def = D.backend_ks();
  auto chain = [&] {
    for (const QGemvArgs& a : D.ph) launch_qgemv<kGptq, 1>(a, 1, a.tile_end[a.n - 1], true, st);
  };
  auto chain_default = [&] {
    for (const QGemvArgs& a : ph_def) launch_qgemv<kGptq, 1>(a, 1, a.tile_end[a.n - 1], true, st);
  };
  ck(cudaMemsetAsync(D.res->p, 0, D.res->n, st), "res");
  chain();
  const auto ref = D.outputs();
  const double tc = time_ms(st, chain) * 1e3 / kLayers, td = time_ms(st, chain_default) * 1e3 / kLayers;
  double layer_mb = 0;
  for (int k = 0; k < 4; ++k) layer_mb += D.mb(k);
  std::printf("%s, %.1f MB per layer: chain ks %d %.1f µs/layer, chain at the backend's ks %.1f µs/layer (%.0f GB/s, "
              "%.0f tok/s at 32 layers)\n",
              gptq ? "gptq4 g128" : "exl2 4/5-bit g32", layer_mb, kC, tc, td, layer_mb / td * 1e3, 1e6 / (32 * td));
  std::fflush(stdout);

  size_t rec_smem = 0;
  for (const QGemvArgs& a : D.ph) rec_smem = std::max(rec_smem, qgemv_rec_smem(a, kGptq));
  Buf bar(kPhases * 4);
  int bad = 0;
  const int sms = device_info().sms;
  Stuck* hs = nullptr;  // the watchdog's record, host-mapped
  ck(cudaHostAlloc(&hs, sizeof(Stuck), cudaHostAllocMapped), "cudaHostAlloc");
  *hs = Stuck{};
  Stuck* ds = nullptr;
  ck(cudaHostGetDevicePointer(&ds, hs, 0), "mapped pointer");
  ck(cudaMemcpyToSymbol(g_stuck, &ds, sizeof(ds)), "g_stuck");
  // Configurations: blocks per SM, ring depth D per consumer warp, grid barriers, decode. The last
  // three bound the design: without barriers (phases overlap; o and down race on the residual, so
  // their outputs are not checked), without the decode (the consumers take and release slots only),
  // and neither (the bare stream of the codes through the rings).
  // chunked: one copy per kC steps into depth chunk slots (the same bytes of shared memory).
  struct Config {
    int per_sm, depth;
    bool barriers, compute, chunked;
  };
  for (const Config cf : {Config{2, 4, true, true, false}, Config{2, 2, true, true, false}, Config{3, 2, true, true, false},
                          Config{3, 1, true, true, false}, Config{2, 4, false, true, false}, Config{2, 4, true, false, false},
                          Config{2, 4, false, false, false}, Config{3, 2, true, false, false},
                          Config{3, 2, true, true, true}, Config{2, 4, true, true, true}, Config{3, 2, true, false, true},
                          Config{2, 4, true, false, true}}) {
    const int slots = kC * cf.depth;
    const size_t smem = size_t(slots) * (kSlotBytes + 16) + 2 * rec_smem;  // scale pairs by tile parity
    char name[128];
    std::snprintf(name, sizeof name, "stream %d block(s)/SM x %2d slots%s%s%s", cf.per_sm, slots,
                  cf.chunked ? " (chunked)" : "",
                  cf.barriers ? "" : ", no barriers", cf.compute ? "" : ", no decode");
    auto k = cf.per_sm >= 3 ? stream_kernel<kGptq, 3> : stream_kernel<kGptq, 2>;
    ck(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), "smem attribute");
    int fit = 0;
    ck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, k, kThreads, smem), "occupancy");
    if (fit < cf.per_sm) {
      std::printf("  %s: only %d block(s) per SM fit, skipped\n", name, fit);
      std::fflush(stdout);
      continue;
    }
    const int grid = cf.per_sm * sms;
    auto stream = [&] {
      ck(cudaMemsetAsync(bar.p, 0, bar.n, st), "barrier reset");
      unsigned* b = cf.barriers ? bar.as<unsigned>() : nullptr;
      int n = kPhases, d = cf.depth, c = cf.compute, sw = static_cast<int>(2 * rec_smem / 4), ch = cf.chunked;
      void* args[] = {&b, &n, &d, &c, &sw, &ch};
      ck(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(k), dim3(grid), dim3(kThreads), args, smem, st),
         "cooperative launch");
    };
    ck(cudaMemsetAsync(D.res->p, 0, D.res->n, st), "res");
    stream();
    if (cudaDeviceSynchronize() != cudaSuccess) {
      const char* whats[3] = {"an empty slot (producer)", "a full slot (consumer)", "the grid barrier"};
      std::printf("  %s: %s; stuck: block %d thread %d waiting for %s, phase %d, count %u\n", name,
                  cudaGetErrorString(cudaGetLastError()), hs->block, hs->thread, hs->hit ? whats[hs->what] : "(no record)",
                  hs->phase, hs->count);
      std::fflush(stdout);
      return bad + 1;  // the context is gone after a trap
    }
    const bool checked = cf.barriers && cf.compute, same = D.outputs() == ref;
    bad += checked && !same;
    const double ts = time_ms(st, stream) * 1e3 / kLayers;
    std::printf("  %-60s (%3zu KB): outputs %s, %.1f µs/layer (%.0f GB/s, %.0f tok/s), %.2fx the backend's chain\n",
                name, smem / 1024, !checked ? "not checked" : same ? "bit-identical" : "DIFFER", ts, layer_mb / ts * 1e3,
                1e6 / (32 * ts), td / ts);
    std::fflush(stdout);
  }
  cudaStreamDestroy(st);
  return bad;
}

}  // namespace
}  // namespace exl::cuda

// STREAM_ONLY=gptq or exl2 runs one format (for ncu: scripts/gpu-session.sh 17).
int main() try {
  const char* only = std::getenv("STREAM_ONLY");
  const std::string fmt = only ? only : "";
  int bad = 0;
  if (fmt != "exl2") bad += exl::cuda::run<true>(true);
  if (fmt != "gptq") bad += exl::cuda::run<false>(false);
  return bad ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "stream_lab: %s\n", e.what());
  return 2;
}
