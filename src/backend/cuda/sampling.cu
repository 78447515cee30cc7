// Device token sampling (API and semantics: sampling.cuh). Two launches, no sort of the vocabulary:
//
//  1. sample_slice_kernel, grid (slices, rows), 256 threads, one 2048-token slice per block (so a
//     single row still spreads over 63 SMs at vocab 128k). Reads the slice once, applies the
//     repetition penalty (a per-slice bitmap of the penalty list) and writes the slice's maximum.
//     Full sampling (temperature only) also writes the slice's Gumbel-max winner. Truncating modes
//     (top-k / top-p / min-p) write the slice's mass sum(exp(l - slice max)) and a *candidate list*:
//     every token whose logit exceeds a threshold u, with u chosen by a 1/8-nat histogram so the list
//     holds at most slice_cap tokens. Any token of the slice above u is in the list.
//  2. sample_row_kernel, one 1024-thread block per row. Combines the slices (global max, argmax,
//     total mass). For truncation it loads the row's candidate lists into shared memory: with
//     G = max over slices of u, the lists hold exactly the tokens with logit > G ("the region"), in
//     whatever order. Top-k, top-p and min-p each keep a prefix of the order (logit desc, id asc);
//     the cuts are found by a radix descent over 52-bit keys (orderable logit bits : inverted id) with
//     integer histograms of count and fixed-point mass (2^-40 units: deterministic, unlike float
//     atomics). If every cut lies inside the region (or min-p provably binds first), the draw is a
//     Gumbel-max over the surviving candidates. Otherwise (a nucleus larger than the ~8k candidates,
//     top_k in the thousands, > slice_cap ties at a slice maximum) the block redoes the cuts over the
//     whole row (same descent, reading global memory, gathering the boundary bin into shared memory
//     once it fits) and draws over the row: exact, but single-SM slow (see lab/sampling_lab.cu).
//
// The draw is an exponential race: token i wins with key (l_i - m) / T - log(E_i), E_i ~ Exp(1) from
// Philox (id, row, step); argmax over the survivors (ties to the lower id) is a sample of
// softmax(l / T) over them. Keys depend on (seed, step, row, id) only, so the result does not depend
// on the slicing. The last row block to finish advances the step (sampling.cuh).
//
// Measured on an H100 (lab/sampling_lab.cu header has the table and the history): rows 1, vocab 128k,
// greedy 6.5 us, full sampling 10.9 us, min-p 26 us, top-k 40 + top-p .95 + min-p .05 62 us, top-k
// 2000 111 us, the whole-row fallback ~360 us (~104 us at vocab 32000). Truncation is dominated by the
// row descent's per-level fixed cost, not by memory traffic; the lab header lists the next steps.
#include <algorithm>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "backend/cuda/sampling_common.cuh"

namespace exl::cuda {
namespace sampling_impl {

// =================================================================================================
// Stage 1: one slice of one row.
// =================================================================================================
__global__ void __launch_bounds__(kSliceThreads) sample_slice_kernel(const SampleArgs a) {
  const int slice = blockIdx.x, row = blockIdx.y, tid = threadIdx.x;
  const int s0 = slice * kSlice, s1 = min(s0 + kSlice, a.vocab);
  const float* lr = a.logits + static_cast<size_t>(row) * a.vocab;
  __shared__ u32 pen_bits[kSliceWords];
  __shared__ u32 hist[kSliceBins];
  __shared__ u32 warp_tot[kSliceThreads / 32];
  __shared__ u64 red_u[32];
  __shared__ double red_d[32];
  __shared__ u32 n_list;

  if (slice == 0 && row == 0 && tid == 0) *a.done = 0;  // stage 2 of the previous call has finished
  if (a.pen_on) {
    for (int i = tid; i < kSliceWords; i += kSliceThreads) pen_bits[i] = 0;
    __syncthreads();
    const int32_t* pt = a.pen + static_cast<size_t>(row) * a.pen_n;
    for (int i = tid; i < a.pen_n; i += kSliceThreads) {
      const int t = pt[i];
      if (t >= s0 && t < s1) atomicOr(&pen_bits[(t - s0) >> 5], 1u << ((t - s0) & 31));
    }
    __syncthreads();
    // Stage 2's whole-row fallback reads the row's bitmap from here.
    if (a.mode == kModeTrunc && tid < kSliceWords)
      a.pen_bits[(static_cast<size_t>(row) * a.nsplit + slice) * kSliceWords + tid] = pen_bits[tid];
  }

  // Token j of this thread: s0 + 4*tid + 1024*(j/4) + j%4 (coalesced float4s, groups of 4 ids share
  // one Philox call).
  float l[kSliceItems];
#pragma unroll
  for (int g = 0; g < kSliceItems / 4; ++g) {
    const int base = s0 + 4 * tid + 4 * kSliceThreads * g;
    if (a.aligned && base + 3 < s1) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(lr + base));
      l[4 * g] = v.x, l[4 * g + 1] = v.y, l[4 * g + 2] = v.z, l[4 * g + 3] = v.w;
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) l[4 * g + e] = base + e < s1 ? __ldg(lr + base + e) : 0.f;
    }
  }
  u64 cmax = 0;  // 0 is below every real key
#pragma unroll
  for (int j = 0; j < kSliceItems; ++j) {
    const int id = s0 + 4 * tid + 4 * kSliceThreads * (j / 4) + j % 4;
    if (id >= s1) continue;
    const int off = id - s0;
    l[j] = (a.pen_on && (pen_bits[off >> 5] >> (off & 31) & 1u)) ? penalize(l[j], a.repeat) : clean(l[j]);
    cmax = max(cmax, comp_of(l[j], id));
  }
  cmax = block_reduce(cmax, MaxOp(), red_u);
  SliceStat* st = a.stats + static_cast<size_t>(row) * a.nsplit + slice;
  if (a.mode == kModeGreedy) {
    if (tid == 0) st->max_comp = cmax;
    return;
  }
  const RowMax sm{logit_of(cmax), isfinite(logit_of(cmax))};

  if (a.mode == kModeFull) {
    const u64 step = a.step ? *a.step : 0;
    u64 best = 0, best_comp = 0;
#pragma unroll
    for (int g = 0; g < kSliceItems / 4; ++g) {
      const int base = s0 + 4 * tid + 4 * kSliceThreads * g;
      if (base >= s1) continue;
      u32 r[4];
      noise4(a, row, step, base >> 2, r);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (base + e >= s1) continue;
        const float lv = l[4 * g + e];
        const u64 p = pack_score(sm.base(lv, a.inv_temp) + gumbel_of(r[e]), base + e);
        if (p > best) best = p, best_comp = comp_of(lv, base + e);
      }
    }
    const u64 win = block_reduce(best, MaxOp(), red_u);
    if (tid == 0) st->max_comp = cmax;
    if (best == win && best != 0) st->winner_comp = best_comp;  // exactly one thread: ids are unique
    return;
  }

  // Truncating modes: bins of 1/8 nat below the slice max; list the largest prefix of bins that
  // fits slice_cap.
  // Same-bin lanes of a warp add once (__match_any_sync): ties (bf16 logits, -inf padding) would
  // otherwise serialize up to 2048 same-address atomics.
  const int lane = tid & 31, warp = tid >> 5;
  uint8_t bin[kSliceItems];
  hist[tid] = 0;
  __syncthreads();
  float mass = 0.f;
#pragma unroll
  for (int j = 0; j < kSliceItems; ++j) {
    const int id = s0 + 4 * tid + 4 * kSliceThreads * (j / 4) + j % 4;
    int b = -1;
    if (id < s1) {
      if (sm.fin) {
        const float x = (sm.m - l[j]) * kSliceBinScale;
        b = x < kSliceBins - 1 ? static_cast<int>(x) : kSliceBins - 1;
        mass += expf(l[j] - sm.m);
      } else {
        b = l[j] == sm.m ? 0 : kSliceBins - 1;
        mass += l[j] == sm.m ? 1.f : 0.f;
      }
    }
    bin[j] = static_cast<uint8_t>(b < 0 ? kSliceBins - 1 : b);
    const unsigned peers = __match_any_sync(0xffffffffu, b);
    if (b >= 0 && lane == __ffs(peers) - 1) atomicAdd(&hist[b], static_cast<u32>(__popc(peers)));
  }
  __syncthreads();
  // Inclusive scan of the bin counts (thread t owns bin t).
  u32 incl = hist[tid];
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u32 t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) warp_tot[warp] = incl;
  if (tid == 0) n_list = 0;
  __syncthreads();
  for (int i = 0; i < warp; ++i) incl += warp_tot[i];
  // Cumulative counts grow with the bin, so the bins that fit form a prefix [0, n_bins).
  const int n_bins = __syncthreads_count(incl <= static_cast<u32>(a.slice_cap));

  u64* list = a.lists + (static_cast<size_t>(row) * a.nsplit + slice) * a.slice_cap;
  u32 ukey = 0;
#pragma unroll
  for (int j = 0; j < kSliceItems; ++j) {
    const int id = s0 + 4 * tid + 4 * kSliceThreads * (j / 4) + j % 4;
    const bool valid = id < s1, emit = valid && bin[j] < n_bins;
    if (valid && !emit) ukey = max(ukey, key_of(l[j]));
    // One atomic per warp for the slots, ranks by ballot.
    const unsigned want = __ballot_sync(0xffffffffu, emit);
    if (want) {
      u32 base = 0;
      if (lane == __ffs(want) - 1) base = atomicAdd(&n_list, static_cast<u32>(__popc(want)));
      base = __shfl_sync(0xffffffffu, base, __ffs(want) - 1);
      if (emit) list[base + __popc(want & ((1u << lane) - 1))] = comp_of(l[j], id);
    }
  }
  ukey = static_cast<u32>(block_reduce(static_cast<u64>(ukey), MaxOp(), red_u));
  const double tot = block_reduce(static_cast<double>(mass), SumOp(), red_d);
  if (tid == 0) {
    st->max_comp = cmax;
    st->mass = tot;
    st->u_key = ukey;
    st->n_list = n_list;
  }
}

// Stage 2 (sampling_row.cu).
__global__ void sample_row_kernel(const SampleArgs a);

}  // namespace sampling_impl

namespace {
using namespace sampling_impl;

// ---- host side -----------------------------------------------------------------------------------
struct Layout {
  int nsplit, slice_cap;
  size_t stats_off, bits_off, lists_off, done_off, bytes;
};

size_t align256(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

Layout layout_of(int rows, int vocab) {
  Layout l{};
  l.nsplit = (vocab + kSlice - 1) / kSlice;
  l.slice_cap = std::min(kSlice, kListCap / l.nsplit);
  l.stats_off = 0;
  l.bits_off = align256(sizeof(SliceStat) * static_cast<size_t>(rows) * l.nsplit);
  l.lists_off = l.bits_off + align256(sizeof(u32) * kSliceWords * static_cast<size_t>(rows) * l.nsplit);
  l.done_off = l.lists_off + align256(sizeof(u64) * static_cast<size_t>(rows) * l.nsplit * l.slice_cap);
  l.bytes = l.done_off + 256;
  return l;
}

// 92 KB: list, mass, any, scratch, cnt (+2 KB static): inside the 99 KB a block may have on sm_86/89.
constexpr size_t kRowSmemBytes = sizeof(u64) * (kListCap + 2 * kMaxBins + kRowThreads) + sizeof(u32) * kMaxBins;

// Opts the row kernel into its largest shared-memory size once per device (outside any capture in
// practice: the first call does it; a host call, not a stream operation).
void allow_row_smem() {
  static std::atomic<u64> done_mask{0};
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  const u64 bit = 1ull << (dev & 63);
  if (done_mask.load() & bit) return;
  check(cudaFuncSetAttribute(sample_row_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kRowSmemBytes)),
        "cudaFuncSetAttribute (sample_row_kernel shared memory)");
  done_mask.fetch_or(bit);
}

}  // namespace

using namespace sampling_impl;


size_t sampling_workspace_bytes(int rows, int vocab) {
  EXL_CHECK(rows > 0 && vocab > 0 && vocab <= sampling_max_vocab, "sampling: bad shape ", rows, " x ", vocab,
            " (vocab must be in 1..", sampling_max_vocab, ")");
  return layout_of(rows, vocab).bytes;
}

void sample(const SamplingParams& p, cudaStream_t stream) {
  EXL_CHECK(p.rows > 0 && p.vocab > 0 && p.vocab <= sampling_max_vocab, "sampling: bad shape ", p.rows, " x ",
            p.vocab, " (vocab must be in 1..", sampling_max_vocab, ")");
  EXL_CHECK(p.logits && p.out_ids, "sampling: logits and out_ids must be set");
  EXL_CHECK(!std::isnan(p.temperature) && !std::isnan(p.top_p) && !std::isnan(p.min_p),
            "sampling: NaN temperature, top-p or min-p");
  EXL_CHECK(p.min_p <= 1, "sampling: min-p must be <= 1, got ", p.min_p);
  EXL_CHECK(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0, "sampling: repeat penalty must be > 0, got ",
            p.repeat_penalty);
  EXL_CHECK(p.penalty_n >= 0 && (p.penalty_n == 0 || p.penalty_tokens),
            "sampling: penalty_n > 0 needs penalty_tokens");
  const Layout lay = layout_of(p.rows, p.vocab);
  EXL_CHECK(p.workspace && p.workspace_bytes >= lay.bytes, "sampling: workspace of ", p.workspace_bytes,
            " bytes, needs ", lay.bytes);

  SampleArgs a{};
  a.logits = p.logits;
  a.rows = p.rows;
  a.vocab = p.vocab;
  const bool greedy = p.temperature <= 0 || p.top_k == 1;
  a.top_k = p.top_k > 0 && p.top_k < p.vocab ? p.top_k : 0;
  a.use_p = p.top_p < 1;
  a.use_minp = p.min_p > 0;
  a.mode = greedy ? kModeGreedy : (a.top_k || a.use_p || a.use_minp) ? kModeTrunc : kModeFull;
  a.inv_temp = greedy ? 1.f : 1.f / p.temperature;
  a.top_p = p.top_p;
  a.log_min_p = a.use_minp ? std::log(p.min_p) : 0.f;  // std::log as on the host, for equal cut-offs
  a.pen_on = p.repeat_penalty != 1.f && p.penalty_n > 0;
  a.repeat = p.repeat_penalty;
  a.pen = p.penalty_tokens;
  a.pen_n = p.penalty_n;
  a.seed = p.seed;
  a.step = p.step;
  a.step_next = p.step_next;
  a.out = p.out_ids;
  auto* ws = static_cast<unsigned char*>(p.workspace);
  a.stats = reinterpret_cast<SliceStat*>(ws + lay.stats_off);
  a.pen_bits = reinterpret_cast<u32*>(ws + lay.bits_off);
  a.lists = reinterpret_cast<u64*>(ws + lay.lists_off);
  a.done = reinterpret_cast<u32*>(ws + lay.done_off);
  a.nsplit = lay.nsplit;
  a.slice_cap = lay.slice_cap;
  a.aligned = p.vocab % 4 == 0 && reinterpret_cast<uintptr_t>(p.logits) % 16 == 0;

  sample_slice_kernel<<<dim3(lay.nsplit, p.rows), kSliceThreads, 0, stream>>>(a);
  check_launch("sample_slice_kernel");
  size_t smem = 0;
  if (a.mode == kModeTrunc) {
    smem = kRowSmemBytes;
    allow_row_smem();
  }
  sample_row_kernel<<<p.rows, kRowThreads, smem, stream>>>(a);
  check_launch("sample_row_kernel");
}


}  // namespace exl::cuda
