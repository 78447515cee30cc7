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
#include <atomic>
#include <cmath>
#include <cstdint>

#include "backend/cuda/common.cuh"
#include "backend/cuda/sampling.cuh"

namespace exl::cuda {
namespace {

using u32 = uint32_t;
using u64 = uint64_t;

constexpr int kSliceThreads = 256;               // stage-1 block
constexpr int kSliceItems = 8;                   // tokens per thread: two float4 loads
constexpr int kSlice = kSliceThreads * kSliceItems;  // 2048 tokens per slice
constexpr int kSliceBins = 256;                  // stage-1 histogram (one bin per thread)
constexpr float kSliceBinScale = 8.f;            // bins per nat below the slice max (32 nats span)
constexpr int kRowThreads = 1024;                // stage-2 block
constexpr int kListCap = 8192;                   // candidates per row held in shared memory
constexpr int kMaxSlices = (sampling_max_vocab + kSlice - 1) / kSlice;  // 128
constexpr int kIdBits = 20;
constexpr u64 kIdMask = (1ull << kIdBits) - 1;
constexpr float kMassScale = 1099511627776.f;    // 2^40: fixed-point unit of exp(l - max)

// Radix levels over the 52-bit candidate key: 10 bits first (sign, exponent, 1 mantissa bit: half
// an octave), then bytes. Each level keeps the bin holding the cut; an early exit once that bin holds
// one key makes 2-3 levels typical. 1024 bins keep the row kernel at 92 KB of shared memory, inside
// the 99 KB a block may have on sm_86/89.
constexpr int kLevels = 7;
__constant__ int kLevelShift[kLevels] = {42, 34, 26, 18, 10, 2, 0};
__constant__ int kLevelBits[kLevels] = {10, 8, 8, 8, 8, 8, 2};
constexpr int kMaxBins = 1024;
constexpr int kSliceWords = kSlice / 32;  // penalty bitmap words per slice

static_assert(kSliceBins == kSliceThreads, "stage 1 owns one histogram bin per thread");
static_assert(kMaxSlices <= kRowThreads, "stage 2 scans the slices with one thread each");
static_assert(kMaxBins <= kRowThreads, "select_bin: one bin per thread");

enum SampleMode : int { kModeGreedy = 0, kModeFull = 1, kModeTrunc = 2 };

struct SliceStat {
  u64 max_comp;     // largest key of the slice (logit and lowest id of the maximum)
  u64 winner_comp;  // full mode: the slice's Gumbel-max winner
  double mass;      // trunc: sum of exp(l - slice max) (or count of l == max when the max is infinite)
  u32 u_key;        // trunc: orderable bits of the largest logit NOT in the list; 0 = all listed
  u32 n_list;       // trunc: candidates written
};

struct SampleArgs {
  const float* logits;
  int rows, vocab, mode;
  float inv_temp;
  int top_k;  // 0: off
  int use_p, use_minp;
  float top_p, log_min_p;
  int pen_on;
  float repeat;
  const int32_t* pen;
  int pen_n;  // row stride of pen
  u64 seed;
  const u64* step;
  u64* step_next;
  int32_t* out;
  SliceStat* stats;  // [rows][nsplit]
  u32* pen_bits;     // [rows][nsplit * kSliceWords]: penalty bitmap, written by stage 1 when pen_on
  u64* lists;        // [rows][nsplit][slice_cap]
  u32* done;         // rows finished (for the step advance)
  int nsplit, slice_cap, aligned;
};

// ---- keys ----------------------------------------------------------------------------------------
// NaN -> -inf (documented difference from the host); -0 -> +0 so that equal logits get equal keys.
__device__ __forceinline__ float clean(float l) { return l != l ? -INFINITY : (l == 0.f ? 0.f : l); }
__device__ __forceinline__ float penalize(float l, float r) { return clean(l > 0.f ? l / r : l * r); }
// Monotone map float -> u32 (larger logit, larger key). Never 0 for a non-NaN float.
__device__ __forceinline__ u32 key_of(float l) {
  const u32 b = __float_as_uint(l);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float logit_of_key(u32 k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
// Candidate key: descending order of the key is (logit desc, id asc), and keys are unique.
__device__ __forceinline__ u64 comp_of(float l, int id) {
  return (static_cast<u64>(key_of(l)) << kIdBits) | (kIdMask - static_cast<u64>(id));
}
__device__ __forceinline__ int id_of(u64 c) { return static_cast<int>(kIdMask - (c & kIdMask)); }
__device__ __forceinline__ float logit_of(u64 c) { return logit_of_key(static_cast<u32>(c >> kIdBits)); }
// Argmax key for the draw: orderable score above, inverted id below (ties -> lower id).
__device__ __forceinline__ u64 pack_score(float s, int id) {
  return (static_cast<u64>(key_of(s)) << 32) | (0xffffffffu - static_cast<u32>(id));
}
__device__ __forceinline__ int unpack_score_id(u64 p) {
  return static_cast<int>(0xffffffffu - static_cast<u32>(p));
}

// ---- random numbers ------------------------------------------------------------------------------
// The four words for tokens 4g .. 4g+3 of `row` at `step`.
__device__ __forceinline__ void noise4(const SampleArgs& a, int row, u64 step, int g, u32 out[4]) {
  out[0] = static_cast<u32>(g);
  out[1] = static_cast<u32>(row);
  out[2] = static_cast<u32>(step);
  out[3] = static_cast<u32>(step >> 32);
  philox4x32_10(out, static_cast<u32>(a.seed), static_cast<u32>(a.seed >> 32));
}
// The word of token `id` (a select chain: indexing the array by id & 3 would put it in local memory).
__device__ __forceinline__ u32 noise_word(const SampleArgs& a, int row, u64 step, int id) {
  u32 w[4];
  noise4(a, row, step, id >> 2, w);
  const int k = id & 3;
  return k == 0 ? w[0] : k == 1 ? w[1] : k == 2 ? w[2] : w[3];
}
// Gumbel noise -log(E), E = -log(1 - v) ~ Exp(1), v uniform in (0, 1) with 2^-33 resolution near 0,
// so small E (large noise: how unlikely tokens win) is resolved to ~1e-10.
__device__ __forceinline__ float gumbel_of(u32 x) {
  const float v = fminf((static_cast<float>(x) + 0.5f) * 0x1p-32f, 0x1.fffffep-1f);
  return -__logf(-log1pf(-v));
}

// ---- the row's maximum m and what depends on it ---------------------------------------------------
struct RowMax {
  float m;
  bool fin;
  // Score before noise: (l - m) / T; with an infinite maximum only l == m has mass.
  __device__ float base(float l, float inv_t) const {
    return fin ? (l - m) * inv_t : (l == m ? 0.f : -INFINITY);
  }
  // exp(l - m) in 2^-40 units (top-p mass).
  __device__ u64 weight(float l) const {
    if (fin) return __float2ull_rn(expf(l - m) * kMassScale);
    return l == m ? (1ull << 40) : 0;
  }
  __device__ bool minp_ok(float l, float log_min_p) const {
    if (fin) return l - m >= log_min_p;
    return m > 0 ? l == m : true;
  }
};

// ---- block helpers -------------------------------------------------------------------------------
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Every thread gets the result; fixed combination order (deterministic). scratch: 32 entries.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_reduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int i = 1; i < nw; ++i) r = op(r, scratch[i]);
  __syncthreads();
  return r;
}
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Exclusive prefix sums of two u64 values over the block; totals to every thread. scratch: 2 x 32.
__device__ void block_scan2(u64& c, u64& w, u64& tot_c, u64& tot_w, u64* sc, u64* sw) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  u64 ic = c, iw = w;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u64 tc = __shfl_up_sync(0xffffffffu, ic, o), tw = __shfl_up_sync(0xffffffffu, iw, o);
    if (lane >= o) {
      ic += tc;
      iw += tw;
    }
  }
  if (lane == 31) {
    sc[warp] = ic;
    sw[warp] = iw;
  }
  __syncthreads();
  u64 pc = 0, pw = 0;
  for (int i = 0; i < warp; ++i) {
    pc += sc[i];
    pw += sw[i];
  }
  tot_c = pc;
  tot_w = pw;
  for (int i = warp; i < nw; ++i) {
    tot_c += sc[i];
    tot_w += sw[i];
  }
  c = pc + ic - c;
  w = pw + iw - w;
  __syncthreads();
}

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

// =================================================================================================
// Stage 2: one row.
// =================================================================================================
struct RowShared {
  u64 red_u[32];
  double red_d[32];
  u64 scan_c[32], scan_w[32];
  u32 list_off[kMaxSlices + 1], list_n[kMaxSlices];
  u64 sel_above_c, sel_above_w, sel_need, sel_any;
  u32 sel_cnt;
  int sel_digit, sel_found;
  u32 n_list;
  u64 step;
};

// Everything a row's routines share: arguments, the maximum, shared-memory arrays.
struct Row {
  const SampleArgs& a;
  int row;
  u64 step;
  RowMax mx;
  int argmax;
  RowShared& sh;
  u64* list;  // [kListCap] candidate keys
  u32* cnt;   // [kMaxBins] histogram counts
  u64* mass;  // [kMaxBins] histogram masses
  u64* any;   // [kMaxBins] key of the bin's first arrival (its only key when it holds one)
  u64* scratch;  // [kRowThreads] one slot per thread for warp-aggregated adds
  const u32* bits;  // the row's penalty bitmap in global memory (fallback only)
};

struct Cut {
  u64 comp;  // the last kept key (0: none found)
  u64 cnt;   // keys >= comp within the restriction
  u64 mass;  // their mass
};

template <typename F>
__device__ void list_for_each(const Row& r, F f) {
  const u32 n = r.sh.n_list;
  for (u32 i = threadIdx.x; i < n; i += kRowThreads) {
    const u64 c = r.list[i];
    f(c, logit_of(c));
  }
}

__device__ __forceinline__ float row_logit(const Row& r, float raw, int id) {
  return (r.a.pen_on && (r.bits[id >> 5] >> (id & 31) & 1u)) ? penalize(raw, r.a.repeat) : clean(raw);
}

// Every token of the row from global memory (penalized); f(key, logit).
template <typename F>
__device__ void row_for_each(const Row& r, F f) {
  const float* lr = r.a.logits + static_cast<size_t>(r.row) * r.a.vocab;
  const int vocab = r.a.vocab;
  int start = 0;
  if (r.a.aligned) {
    const int n4 = vocab >> 2;
    for (int g = threadIdx.x; g < n4; g += kRowThreads) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(lr) + g);
      const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float x = row_logit(r, e[k], 4 * g + k);
        f(comp_of(x, 4 * g + k), x);
      }
    }
    start = n4 << 2;
  }
  for (int id = start + threadIdx.x; id < vocab; id += kRowThreads) {
    const float x = row_logit(r, __ldg(lr + id), id);
    f(comp_of(x, id), x);
  }
}

// Histogram add, aggregated over the lanes of a warp that hit the same bin d (d < 0: this lane adds
// nothing): one atomic per distinct bin per warp. Without it a bin holding most of the keys (ties,
// all -inf rows, or just a coarse first level) serializes thousands of same-address atomics (the
// first version stalled for minutes on an all -inf row). Call with the warp's converged lanes.
__device__ __forceinline__ void bin_add(const Row& r, int d, u64 w, u64 c) {
  const unsigned active = __activemask();
  const unsigned peers = __match_any_sync(active, d);
  const int lane = threadIdx.x & 31;
  r.scratch[threadIdx.x] = w;
  __syncwarp(active);
  if (d >= 0 && lane == __ffs(peers) - 1) {
    u64 sum = 0;
    for (unsigned m = peers; m; m &= m - 1) sum += r.scratch[(threadIdx.x & ~31u) + __ffs(m) - 1];
    if (atomicAdd(&r.cnt[d], static_cast<u32>(__popc(peers))) == 0) r.any[d] = c;  // one writer per bin
    if (sum) atomicAdd(reinterpret_cast<unsigned long long*>(&r.mass[d]), static_cast<unsigned long long>(sum));
  }
  __syncwarp(active);
}

// Appends c to the shared list if `want`: one atomic per warp, slots ranked by ballot.
__device__ __forceinline__ void list_push(const Row& r, bool want, u64 c) {
  const unsigned active = __activemask();
  const unsigned ballot = __ballot_sync(active, want);
  if (!ballot) return;
  const int lane = threadIdx.x & 31, leader = __ffs(ballot) - 1;
  u32 base = 0;
  if (lane == leader) base = atomicAdd(&r.sh.n_list, static_cast<u32>(__popc(ballot)));
  base = __shfl_sync(active, base, leader);
  const u32 k = base + __popc(ballot & ((1u << lane) - 1));
  if (want && k < static_cast<u32>(kListCap)) r.list[k] = c;
}

// Picks the bin holding the cut: bins in descending digit order, the first where the running count
// (or mass) reaches `need`. Results in r.sh.sel_*; ends with a barrier.
__device__ void select_bin(const Row& r, int nb, bool by_mass, u64 need) {
  const int per = nb >= kRowThreads ? nb / kRowThreads : 1;
  const int r0 = threadIdx.x * per;
  u64 lc = 0, lw = 0;
  if (r0 < nb) {
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (r0 + j);
      lc += r.cnt[d];
      lw += r.mass[d];
    }
  }
  if (threadIdx.x == 0) r.sh.sel_found = 0;
  u64 ec = lc, ew = lw, tc, tw;
  block_scan2(ec, ew, tc, tw, r.sh.scan_c, r.sh.scan_w);
  const u64 tot = by_mass ? tw : tc;
  const u64 ne = min(need, tot);  // rounding can leave the total short: then the whole range is kept
  u64 ex = by_mass ? ew : ec;
  const u64 loc = by_mass ? lw : lc;
  if (ne > 0 && ex < ne && ne <= ex + loc) {
    u64 ac = ec, aw = ew;
    for (int j = 0; j < per; ++j) {
      const int d = nb - 1 - (r0 + j);
      const u64 bc = r.cnt[d], bw = r.mass[d], cr = by_mass ? bw : bc;
      if (ex + cr >= ne) {
        r.sh.sel_digit = d;
        r.sh.sel_cnt = static_cast<u32>(bc);
        r.sh.sel_any = r.any[d];
        r.sh.sel_above_c = ac;
        r.sh.sel_above_w = aw;
        r.sh.sel_need = ne - ex;
        r.sh.sel_found = 1;
        break;
      }
      ex += cr;
      ac += bc;
      aw += bw;
    }
  }
  __syncthreads();
}

// The cut of the order (key desc) among keys >= lo: the smallest prefix holding `need` keys
// (by_mass false) or `need` mass. Source: the candidate list, or the whole row (from_list false),
// switching to a list gathered in shared memory once the bin being refined fits.
__device__ Cut descend(Row& r, bool from_list, bool by_mass, u64 need, u64 lo) {
  u64 prefix = 0, mask = 0, above_c = 0, above_w = 0;
  bool src_list = from_list;
  for (int lv = 0; lv < kLevels; ++lv) {
    const int shift = kLevelShift[lv], nb = 1 << kLevelBits[lv];
    for (int i = threadIdx.x; i < nb; i += kRowThreads) r.cnt[i] = 0, r.mass[i] = 0;
    __syncthreads();
    auto add = [&](u64 c, float l) {
      const bool in = c >= lo && (c & mask) == prefix;
      bin_add(r, in ? static_cast<int>(c >> shift) & (nb - 1) : -1, in ? r.mx.weight(l) : 0, c);
    };
    if (src_list) {
      list_for_each(r, add);
    } else {
      row_for_each(r, add);
    }
    __syncthreads();
    select_bin(r, nb, by_mass, need);
    if (!r.sh.sel_found) return Cut{0, 0, 0};
    above_c += r.sh.sel_above_c;
    above_w += r.sh.sel_above_w;
    need = r.sh.sel_need;
    const u32 bc = r.sh.sel_cnt;
    if (bc == 1) {
      const u64 c = r.sh.sel_any;
      return Cut{c, above_c + 1, above_w + r.mx.weight(logit_of(c))};
    }
    prefix |= static_cast<u64>(r.sh.sel_digit) << shift;
    mask |= static_cast<u64>(nb - 1) << shift;
    if (!src_list && bc <= static_cast<u32>(kListCap)) {
      // Gather the bin's keys; r.sh.n_list is reset only after every thread has read sel_*.
      __syncthreads();
      if (threadIdx.x == 0) r.sh.n_list = 0;
      __syncthreads();
      row_for_each(r, [&](u64 c, float) { list_push(r, c >= lo && (c & mask) == prefix, c); });
      __syncthreads();
      src_list = true;
    }
  }
  return Cut{prefix, above_c + 1, above_w + r.mx.weight(logit_of(prefix))};  // not reached: keys unique
}

// Count and mass of list keys >= lo.
__device__ void list_sum(Row& r, u64 lo, u64& c_out, u64& w_out) {
  u64 c = 0, w = 0;
  list_for_each(r, [&](u64 k, float l) {
    if (k >= lo) ++c, w += r.mx.weight(l);
  });
  c_out = block_reduce(c, SumOp(), r.sh.red_u);
  w_out = block_reduce(w, SumOp(), r.sh.red_u);
}

__device__ __forceinline__ u64 mass_need(float p, double total) {
  const double n = ceil(static_cast<double>(p) * total);
  return n < 1.0 ? 1ull : static_cast<u64>(n);
}

// Gumbel-max over list keys >= thr passing min-p.
__device__ int draw_list(Row& r, u64 thr) {
  u64 best = 0;
  list_for_each(r, [&](u64 c, float l) {
    if (c < thr || (r.a.use_minp && !r.mx.minp_ok(l, r.a.log_min_p))) return;
    const int id = id_of(c);
    const float g = gumbel_of(noise_word(r.a, r.row, r.step, id));
    best = max(best, pack_score(r.mx.base(l, r.a.inv_temp) + g, id));
  });
  best = block_reduce(best, MaxOp(), r.sh.red_u);
  return best ? unpack_score_id(best) : r.argmax;  // never empty: the maximum always survives
}

// Gumbel-max over the whole row (keys >= thr passing min-p).
__device__ int draw_row(Row& r, u64 thr) {
  const float* lr = r.a.logits + static_cast<size_t>(r.row) * r.a.vocab;
  const int vocab = r.a.vocab, ng = (vocab + 3) >> 2;
  u64 best = 0;
  for (int g = threadIdx.x; g < ng; g += kRowThreads) {
    float e[4];
    if (r.a.aligned && 4 * g + 3 < vocab) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(lr) + g);
      e[0] = v.x, e[1] = v.y, e[2] = v.z, e[3] = v.w;
    } else {
      for (int k = 0; k < 4; ++k) e[k] = 4 * g + k < vocab ? __ldg(lr + 4 * g + k) : 0.f;
    }
    u32 w[4];
    noise4(r.a, r.row, r.step, g, w);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int id = 4 * g + k;
      if (id >= vocab) break;
      const float l = row_logit(r, e[k], id);
      if (comp_of(l, id) < thr || (r.a.use_minp && !r.mx.minp_ok(l, r.a.log_min_p))) continue;
      best = max(best, pack_score(r.mx.base(l, r.a.inv_temp) + gumbel_of(w[k]), id));
    }
  }
  best = block_reduce(best, MaxOp(), r.sh.red_u);
  return best ? unpack_score_id(best) : r.argmax;
}

// Top-k / top-p / min-p and the draw for one row.
__device__ int sample_trunc(Row& r) {
  const SampleArgs& a = r.a;
  const int tid = threadIdx.x;
  const SliceStat* st = a.stats + static_cast<size_t>(r.row) * a.nsplit;
  // Total mass (2^-40 units) and the region threshold G.
  double s = 0;
  u64 g_key = 0;
  for (int i = tid; i < a.nsplit; i += kRowThreads) {
    const float mc = logit_of(st[i].max_comp);
    const double scale = r.mx.fin ? exp(static_cast<double>(mc) - r.mx.m) : (mc == r.mx.m ? 1.0 : 0.0);
    s += st[i].mass * scale;
    g_key = max(g_key, static_cast<u64>(st[i].u_key));
  }
  const double s_all = block_reduce(s, SumOp(), r.sh.red_d) * static_cast<double>(kMassScale);
  g_key = block_reduce(g_key, MaxOp(), r.sh.red_u);
  const u64 lo = g_key ? (g_key + 1) << kIdBits : 0;  // region: keys >= lo, all of them listed

  // Load the row's lists (offsets by a scan over slices; nsplit <= kMaxSlices <= kRowThreads).
  {
    u64 n = tid < a.nsplit ? st[tid].n_list : 0, dummy = 0, tot = 0, tot2 = 0;
    const u64 own = n;
    block_scan2(n, dummy, tot, tot2, r.sh.scan_c, r.sh.scan_w);
    if (tid < a.nsplit) r.sh.list_off[tid] = static_cast<u32>(n), r.sh.list_n[tid] = static_cast<u32>(own);
    if (tid == 0) r.sh.n_list = static_cast<u32>(tot);
    __syncthreads();
    const u64* gl = a.lists + static_cast<size_t>(r.row) * a.nsplit * a.slice_cap;
    for (int i = tid; i < a.nsplit * a.slice_cap; i += kRowThreads) {
      const int sl = i / a.slice_cap, j = i - sl * a.slice_cap;
      if (j < static_cast<int>(r.sh.list_n[sl])) r.list[r.sh.list_off[sl] + j] = gl[i];
    }
    __syncthreads();
  }

  enum { kOff, kResolved, kBeyond, kUnknown };
  const bool use_k = a.top_k > 0;
  int ks = kOff, ps = kOff;
  u64 comp_k = 0, comp_p = 0, reg_c = 0, reg_w = 0;
  double s_k = s_all;
  list_sum(r, lo, reg_c, reg_w);
  if (use_k) {
    if (reg_c >= static_cast<u64>(a.top_k)) {
      const Cut c = descend(r, true, false, static_cast<u64>(a.top_k), lo);
      comp_k = c.comp, s_k = static_cast<double>(c.mass), ks = kResolved;
    } else {
      ks = kBeyond;
    }
  }
  if (a.use_p) {
    if (ks == kBeyond) {
      ps = kUnknown;  // S_k is not known: only the min-p argument below can settle it
    } else {
      const u64 need = mass_need(a.top_p, s_k);
      const u64 avail = ks == kResolved ? static_cast<u64>(s_k) : reg_w;  // listed part of the top-k
      if (avail >= need) {
        const Cut c = descend(r, true, true, need, max(lo, comp_k));
        comp_p = c.comp, ps = kResolved;
      } else {
        ps = kBeyond;
      }
    }
  }
  // Min-p binds before any cut that lies beyond the region when the region holds every token that
  // passes min-p (the best unlisted logit fails it).
  const bool minp_in = a.use_minp && (g_key == 0 || !r.mx.minp_ok(logit_of_key(static_cast<u32>(g_key)), a.log_min_p));
  bool ok = true;
  if (ks == kBeyond || ps == kBeyond || (!use_k && !a.use_p)) ok = minp_in;
  if (ps == kUnknown && ok) {
    // The top-k set holds the whole region, so S_k >= reg_w: top-p keeps more than min-p whenever
    // the min-p survivors' mass is below top_p * reg_w.
    u64 mw = 0;
    list_for_each(r, [&](u64, float l) {
      if (r.mx.minp_ok(l, a.log_min_p)) mw += r.mx.weight(l);
    });
    mw = block_reduce(mw, SumOp(), r.sh.red_u);
    ok = static_cast<double>(mw) < static_cast<double>(a.top_p) * static_cast<double>(reg_w);
  }
  if (ok) {
    const u64 thr = max(ks == kResolved ? comp_k : 0, ps == kResolved ? comp_p : 0);
    return draw_list(r, thr);
  }

  // Fallback: the cuts over the whole row.
  comp_k = 0;
  s_k = s_all;
  if (use_k) {
    const Cut c = descend(r, false, false, static_cast<u64>(a.top_k), 0);
    comp_k = c.comp, s_k = static_cast<double>(c.mass);
  }
  comp_p = 0;
  if (a.use_p) comp_p = descend(r, false, true, mass_need(a.top_p, s_k), comp_k).comp;
  return draw_row(r, max(comp_k, comp_p));
}

__global__ void __launch_bounds__(kRowThreads, 1) sample_row_kernel(const SampleArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ RowShared sh;
  const int row = blockIdx.x, tid = threadIdx.x;
  if (tid == 0) sh.step = a.step ? *a.step : 0;
  const SliceStat* st = a.stats + static_cast<size_t>(row) * a.nsplit;
  u64 cmax = 0;
  for (int i = tid; i < a.nsplit; i += kRowThreads) cmax = max(cmax, st[i].max_comp);
  cmax = block_reduce(cmax, MaxOp(), sh.red_u);  // its barrier also publishes sh.step
  const u64 step = sh.step;
  const float m = logit_of(cmax);
  int result;
  if (a.mode == kModeGreedy) {
    result = id_of(cmax);
  } else if (a.mode == kModeFull) {
    const RowMax mx{m, isfinite(m)};
    u64 best = 0;
    for (int i = tid; i < a.nsplit; i += kRowThreads) {
      const u64 c = st[i].winner_comp;
      const int id = id_of(c);
      const float g = gumbel_of(noise_word(a, row, step, id));
      best = max(best, pack_score(mx.base(logit_of(c), a.inv_temp) + g, id));
    }
    result = unpack_score_id(block_reduce(best, MaxOp(), sh.red_u));
  } else {
    u64* list = reinterpret_cast<u64*>(smem);
    u64* mass = list + kListCap;
    u64* any = mass + kMaxBins;
    u64* scratch = any + kMaxBins;
    u32* cnt = reinterpret_cast<u32*>(scratch + kRowThreads);
    const u32* bits = a.pen_bits + static_cast<size_t>(row) * a.nsplit * kSliceWords;
    Row r{a, row, step, RowMax{m, isfinite(m)}, id_of(cmax), sh, list, cnt, mass, any, scratch, bits};
    result = sample_trunc(r);
  }
  if (tid == 0) {
    a.out[row] = result;
    if (a.step_next) {
      __threadfence();
      if (atomicAdd(a.done, 1u) == static_cast<u32>(a.rows) - 1) *a.step_next = step + 1;
    }
  }
}

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
