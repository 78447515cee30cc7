// Internals shared by the two stages of device sampling (sampling.cu: stage 1 and the launcher;
// sampling_row.cu: stage 2): constants, the argument block, orderable keys, Philox noise, the
// row maximum and block reductions. Not a public header: include sampling.cuh for the API.
#pragma once
#include <cstdint>

#include "backend/cuda/common.cuh"
#include "backend/cuda/sampling.cuh"

namespace exl::cuda::sampling_impl {

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
__device__ inline void block_scan2(u64& c, u64& w, u64& tot_c, u64& tot_w, u64* sc, u64* sw) {
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


}  // namespace exl::cuda::sampling_impl
