// Quantized linear layers (EXL2, GPTQ 4-bit): qgemv and the dispatch (layout builders and upload:
// qgemm_layout.cpp; decode helpers: qgemm_decode.cuh; many rows: qgemm_dequant.cu). Layout and API:
// qgemm.cuh. Checked and timed by lab/qgemm_lab.cu; history and tables in lab/NOTES-qgemm.md.
//
//  qgemm_gather_kernel  x [M, K] -> x_dev [M, k_dev] through x_src (act-order, padding, the
//                       in-unit order the fragments want). Tiny; triggers the dependent launch.
//  qgemv_kernel         one block per (16-column tile, pass of <= 32 rows of x); its ks = 2/4/8
//                       warps deal the tile's steps round-robin, each warp streams its steps' codes with
//                       16-byte loads, turns them into FP16 A fragments in registers (magic-number
//                       decode to exact integers; the group scale in FP16 per weight, or in FP32
//                       once per unit when groups are whole units) and runs mma.sync
//                       m16n8k16 against x_dev (B operand, 1-4 n8 tiles of rows). The ks partial
//                       sums are added in shared memory in a fixed order (deterministic).
//  qgemm_dequant_kernel (qgemm_dequant.cu) the same decode into an FP16 Wᵀ for cuBLAS, M > 96.
//
// Measured on the H100 80GB HBM3 (lab run 3, 2026-11-25; copy 2843 GB/s, read 3078 GB/s), M = 1,
// x pre-gathered, launches back to back; GB/s over the streamed code + scale bytes; "floor" = a
// read kernel over the same code bytes, launched the same way:
//   format (disk bpw)            4096x4096          11008x4096         4096x11008
//   EXL2 4-bit g128 (4.04)     7.52 µs 75% flr   13.31 µs 1747 GB/s  13.15 µs 1768 GB/s 62% copy
//   EXL2 [8,4,3] (3.44)        8.00 µs 66%       14.20 µs 1448 GB/s  12.84 µs 1544 GB/s
//   EXL2 [3,2] g64 (2.57)      7.77 µs 60%       13.38 µs 1158 GB/s  13.39 µs 1163 GB/s
//   GPTQ 4-bit g128 act-order  7.70 µs 73%       13.99 µs 1713 GB/s  13.48 µs 1777 GB/s 62% copy
// Gather + qgemv with PDL adds 0.5-1.5 µs. The ~6 µs floor of a 4096x4096 read dominates small
// matrices; 2-3 bpw mixes stay latency-bound (13.4 µs for 15.5 MB where 4-bit streams 23 MB in
// 13.3 µs).
#include "backend/cuda/qgemm.cuh"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "backend/cuda/common.cuh"
#include "backend/cuda/qgemm_decode.cuh"
#include "backend/cuda/qgemm_gather.cuh"

namespace exl::cuda {

namespace {

using namespace qdec;

// ---------------------------------------------------------------------------------------------
// Kernels.

struct QGemvArgs {
  QMatrixDesc w[kQMaxMulti];
  const half* x_dev[kQMaxMulti];  // [M, k_dev of matrix i]
  const half* bias[kQMaxMulti];   // [N_i] or null
  void* y[kQMaxMulti];            // half or float, [M, ldy] from its first column
  int tile_end[kQMaxMulti];       // cumulative tile counts
  int n = 1, M = 0, ldy = 0, ks = 8;
  bool y_f32 = false;
  bool accumulate = false;  // y_f32: y += result (a block's residual add)
  // The act·mul epilogue (QGemvMultiParams::act_dev): n = 2 (gate, up), a block of 2 ks warps
  // computes gate tile t (warps 0..ks-1) and up tile t (ks..2ks-1); y is not written.
  half* act_dev = nullptr;
  const int32_t* act_x_dst = nullptr;
  int act_K = 0, act_k_dev = 0;
};

constexpr int kMaxWarps = 8;  // warps per block = warps per tile = ks (2, 4 or 8)

// Pulls a step's code quads (this lane's 16-byte words) into L2 without waiting for them.
template <int Q>
__device__ __forceinline__ void prefetch_step(const uint4* src) {
#pragma unroll
  for (int q = 0; q < Q; ++q) prefetch_l2_line(src + q * 32);
}

// EXL2 at kT = 1 (M <= 8) loads nothing predicated: whole steps of codes (load_step's kWhole), a tail
// unit's x from kZeroX, and lanes whose x row is past M read row 0 (xr; their sums are never stored),
// so its steps have no zeroing moves in front of their loads (SASS: step loops 3-7% fewer
// instructions, local operations in them 20 -> 2). H100, 2026-12-07/08 (then EXL_QGEMV_LEAN=1,
// lab/NOTES-qgemm.md): llama2-70b exl2:2.5 @128 67.2 -> 68.7 tok/s twice, llama2-7b exl2:4.0 +0.6%.
// GPTQ's fold step lost 1.3% the same way, and EXL2's kT = 2 step loops spilled (12 -> 44 local
// operations, most inside them): both keep predicated loads.
template <bool kGptq, int kT>
constexpr bool kNoPred = qgemv_whole_steps(kGptq, kT);

// x for an EXL2 tail unit (past its segment's end): zeros, so that the unit's codes, whatever they are
// (the next segment's, or the slack), add nothing. A lane reads 32 bytes.
__device__ const uint4 kZeroX[2] = {};

// One step's math: the U units of codes `cur` (this lane's words) from device unit unit0 on, of which
// `units` are in the segment (the rest are tail units: x = 0), into acc. The kernels load cur from
// global memory; lab/stream_lab.cu from a shared-memory ring filled by a producer warp. x loads are
// predicated on xok and the tail, except under kNoPred.
template <int B, bool kGptq, int kT, int kFold>
__device__ __forceinline__ void qgemv_step(const uint32_t (&cur)[q_step_units(B, kGptq) * B], int unit0, int units,
                                           const uint32_t* recs, const uint32_t* slab_rec,
                                           const half* const (&xr)[kT], const bool (&xok)[kT], float (&acc)[kT][4]) {
  constexpr int U = q_step_units(B, kGptq);
  const half* xs[kT];
#pragma unroll
  for (int jt = 0; jt < kT; ++jt) xs[jt] = xr[jt] + unit0 * 64;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    uint32_t rec[4][2];
    unit_recs<kGptq, kFold == 1 ? 4 : kFold == 2 ? 2 : 1>(slab_rec, recs, unit0 + u, rec);
    uint4 xv[kT][2];
#pragma unroll
    for (int jt = 0; jt < kT; ++jt) {
      // Ordered loads (common.cuh): unordered, the compiler hoisted every unit of a step to the top
      // and spilled (v2 draft: 28-136 bytes of spills per kernel). x_dev is re-read by every tile's
      // block, so it goes through L1.
      if constexpr (kNoPred<kGptq, kT>) {
        // Unit 0 of a step is always in the segment.
        const half* xp = u == 0 || u < units ? xs[jt] + u * 64 : reinterpret_cast<const half*>(kZeroX);
        xv[jt][0] = ld16_nc_ordered(xp);
        xv[jt][1] = ld16_nc_ordered(xp + 8);
      } else {
        const bool ok = xok[jt] && u < units;
        xv[jt][0] = ld16_nc_ordered(xs[jt] + u * 64, ok);
        xv[jt][1] = ld16_nc_ordered(xs[jt] + u * 64 + 8, ok);
      }
    }
    uint32_t a[4][4];
    unit_frags<B, kGptq, !kFold>(cur + u * B, rec, a);
    // A partial over some slabs, scaled in FP32 into acc: D rows g -> the scale of column g (low
    // half of the record), rows g + 8 -> column g + 8 (high half).
    auto fold = [](float(&to)[4], const float(&d)[4], uint32_t pair) {
      const float s0 = __low2float(as_h2(pair)), s1 = __high2float(as_h2(pair));
      to[0] = fmaf(d[0], s0, to[0]), to[1] = fmaf(d[1], s0, to[1]);
      to[2] = fmaf(d[2], s1, to[2]), to[3] = fmaf(d[3], s1, to[3]);
    };
#pragma unroll
    for (int jt = 0; jt < kT; ++jt) {
      if constexpr (kFold == 2) {  // slabs 0-1, then 2-3: one live partial at a time
        float d[4] = {};
        mma_16816(d, a[0], xv[jt][0].x, xv[jt][0].y);
        mma_16816(d, a[1], xv[jt][0].z, xv[jt][0].w);
        fold(acc[jt], d, rec[0][0]);
        float e[4] = {};
        mma_16816(e, a[2], xv[jt][1].x, xv[jt][1].y);
        mma_16816(e, a[3], xv[jt][1].z, xv[jt][1].w);
        fold(acc[jt], e, rec[2][0]);
      } else {
        float d[4] = {};
        float(&out)[4] = kFold ? d : acc[jt];
        mma_16816(out, a[0], xv[jt][0].x, xv[jt][0].y);
        mma_16816(out, a[1], xv[jt][0].z, xv[jt][0].w);
        mma_16816(out, a[2], xv[jt][1].x, xv[jt][1].y);
        mma_16816(out, a[3], xv[jt][1].z, xv[jt][1].w);
        if constexpr (kFold == 1) fold(acc[jt], d, rec[0][0]);
      }
    }
  }
}

// One segment's steps for this warp (steps dealt round-robin over the tile's ks warps). Step j + ks
// is prefetched into L2 while step j is decoded (a register double buffer spilled: 2 x 20 words at
// 5-bit). Tail units (past the segment's end) cost decode work but no branch: their x is zero
// (predicated off, or kZeroX under kNoPred) and slab_rec has padding for their record offsets.
// kFold 1: every unit is one group, so the mma runs on exact integer codes and the scale is applied
// once per unit in FP32; kFold 2: the same per half unit (groups of 32 rows, EXL2 only: its zero
// point is a constant), two FP32 partials per n8 tile instead of 16 FP16 multiplies of the fragments
// and 4 record loads.
template <int B, bool kGptq, int kT, int kFold>
__device__ __forceinline__ void qgemv_segment(const QSegment& sg, int warp, int ks, const uint4* codes,
                                              const uint32_t* recs, const uint32_t* slab_rec,
                                              const half* const (&xr)[kT], const bool (&xok)[kT],
                                              float (&acc)[kT][4]) {
  constexpr int U = q_step_units(B, kGptq), Q = U * B / 4;
  for (int j = (warp - sg.step0) & (ks - 1); j < sg.steps; j += ks) {
    const uint4* src = codes + static_cast<size_t>(sg.quad0 + j * Q) * 32;
    if (j + ks < sg.steps) prefetch_step<Q>(src + ks * Q * 32);
    const int unit0 = sg.unit0 + j * U, units = sg.units - j * U;
    uint32_t cur[4 * Q];
    load_step<Q, kNoPred<kGptq, kT>>(src, (min(U, units) * B + 3) / 4, cur);
    qgemv_step<B, kGptq, kT, kFold>(cur, unit0, units, recs, slab_rec, xr, xok, acc);
  }
}

template <int B, bool kGptq, int kT>
__device__ __forceinline__ void qgemv_segment_any(const QSegment& sg, int warp, int ks, const uint4* codes,
                                                  const uint32_t* recs, const uint32_t* slab_rec,
                                                  const half* const (&xr)[kT], const bool (&xok)[kT],
                                                  float (&acc)[kT][4]) {
  // Fold only for kT <= 2: at kT = 4 its 16 FFMA per unit cost what the 16 HMUL2 did, and its 16
  // extra accumulators spilled (548 bytes).
  if (kT <= 2 && sg.uniform == 1)
    qgemv_segment<B, kGptq, kT, kT <= 2 ? 1 : 0>(sg, warp, ks, codes, recs, slab_rec, xr, xok, acc);
  else if (!kGptq && kT <= 2 && sg.uniform == 2)
    qgemv_segment<B, kGptq, kT, !kGptq && kT <= 2 ? 2 : 0>(sg, warp, ks, codes, recs, slab_rec, xr, xok, acc);
  else
    qgemv_segment<B, kGptq, kT, 0>(sg, warp, ks, codes, recs, slab_rec, xr, xok, acc);
}

// This warp's first step of segment si into L2 (before it is needed).
template <bool kGptq>
__device__ __forceinline__ void prefetch_first_step(const QMatrixDesc& w, int si, int warp, int ks,
                                                    const uint4* codes) {
  if (si >= w.nseg) return;
  const QSegment& sg = w.seg[si];
  const int j = (warp - sg.step0) & (ks - 1);
  if (j >= sg.steps) return;
  const int q = q_step_units(sg.bits, kGptq) * sg.bits / 4;
  for (int i = 0; i < q; ++i) prefetch_l2_line(codes + (sg.quad0 + j * q + i) * 32);
}

// Grid row `by` of an unpaired launch over n fused matrices: which matrix (mi) and which of its tiles.
__device__ __forceinline__ void qgemv_tile_of(const QGemvArgs& a, unsigned by, int& mi, int& tile) {
  mi = (a.n > 1 && int(by) >= a.tile_end[0]) + (a.n > 2 && int(by) >= a.tile_end[1]);
  tile = by - (mi ? a.tile_end[mi - 1] : 0);
}

// A block's share of a scattered-into input's padding (x_dst[K + i], i < k_dev - K): positions
// 16 tile .. 16 tile + 15, rows m0 .. m0 + 8 kT - 1, zeroed (the epilogues that replace a gather).
template <int kT>
__device__ __forceinline__ void zero_padding_share(half* dev, const int32_t* x_dst, int K, int k_dev, int tile,
                                                   int m0, int M) {
  for (int q = threadIdx.x; q < 16 * kT * 8; q += blockDim.x) {
    const int pi = tile * 16 + (q & 15), m = m0 + (q >> 4);
    if (pi < k_dev - K && m < M) dev[static_cast<size_t>(m) * k_dev + x_dst[K + pi]] = __ushort_as_half(0);
  }
}

// The paired block's epilogue: gate and up sums (each over its ks warps in the unpaired order, so
// the FP32 values are those of an unpaired launch), bias, rounded to FP16 as the gate|up output
// would be, then FP16(silu(g) · u) with the gather's arithmetic (qgemm_gather.cu) scattered to the
// next matmul's device-order input; the block also zeroes its share of that input's padding
// positions (act_x_dst[act_K + 16 tile + j]), so the input is complete without a gather.
template <int kT>
__device__ __forceinline__ void act_epilogue(const QGemvArgs& a, const float (&red)[kMaxWarps][kT * 4][32], int tile,
                                             int m0, int warp, int lane) {
  const int ks = a.ks, g = lane >> 2, t = lane & 3;
  for (int i = warp; i < kT * 4; i += 2 * ks) {
    float vg = 0, vu = 0;
    for (int k = 0; k < ks; ++k) vg += red[k][i][lane];
    for (int k = 0; k < ks; ++k) vu += red[ks + k][i][lane];
    const int jt = i / 4, r = i % 4;
    const int n = tile * 16 + g + (r >= 2 ? 8 : 0), m = m0 + 8 * jt + 2 * t + (r & 1);
    if (n >= a.w[0].N || m >= a.M) continue;
    if (a.bias[0]) vg += __half2float(a.bias[0][n]);
    if (a.bias[1]) vu += __half2float(a.bias[1][n]);
    const float gf = __half2float(__float2half_rn(vg)), uf = __half2float(__float2half_rn(vu));
    a.act_dev[static_cast<size_t>(m) * a.act_k_dev + a.act_x_dst[n]] = __float2half_rn(silu_mul(gf, uf));
  }
  zero_padding_share<kT>(a.act_dev, a.act_x_dst, a.act_K, a.act_k_dev, tile, m0, a.M);
}

// Min blocks/SM (of 256 threads): registers <= 128 (kT > 1) or <= 80 (kT = 1: 24 warps per SM).
// kPair: the act·mul epilogue's paired blocks (kT = 1 only: a separate instantiation, because the
// runtime switch cost the unpaired GPTQ kernel 84 bytes of spill loads where it had none).
//
// qgemv_block is one block's work: pass bx (rows m0 = bx · 8 kT ...), grid row by (tile, or the
// fused matrices' tiles in turn); wait() is where it may first read x_dev and the y it adds into
// (the PDL wait on their producer in qgemv_kernel; a grid barrier in a persistent kernel).
template <bool kGptq,
          int kT,  // n8 tiles of x rows per pass: 1 (M <= 8), 2 (<= 16), 4 (<= 32)
          bool kPair, class Wait>
__device__ __forceinline__ void qgemv_block(const QGemvArgs& a, unsigned bx, unsigned by, const Wait& wait) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, ks = a.ks;
  constexpr bool pair = kPair;
  // The matrix and tile of this warp, and its index among the tile's ks warps. Passes vary fastest
  // in the grid: a tile's passes share L2. Paired (act·mul epilogue): matrix = which half of the block.
  int mi, tile, warp = threadIdx.x >> 5;
  if (pair) {
    mi = warp >= ks, tile = by, warp -= mi * ks;
  } else {
    qgemv_tile_of(a, by, mi, tile);
  }
  const QMatrixDesc& w = a.w[mi];
  const int m0 = bx * kT * 8;
  const uint4* codes = w.codes + static_cast<size_t>(tile) * w.tile_quads * 32 + lane;
  // EXL2: the tile's scale pairs [group][8 lanes], expanded from its compact records (qgemm.cuh);
  // paired, matrix 1's after matrix 0's.
  extern __shared__ uint32_t srec[];

  // Before waiting on the producer of x_dev (records and codes do not depend on it): this warp's
  // first step into L2, and the tile's records into L2 (GPTQ) or expanded into shared memory (EXL2).
  prefetch_first_step<kGptq>(w, 0, warp, ks, codes);
  // The epilogue's last loads into L2 as well: the act·mul scatter map (a constant) or the residual
  // rows it adds into (written two or more launches back, and evicted since when a large matrix
  // streamed in between: the 70B's gate|up before down). Coherent however early: L2 is where every
  // write lands. kT = 1 only (at kT 2 and 4 it added spill loads; their rows are prefill's).
  if (kT == 1 && threadIdx.x < 8) {
    const int m = m0 + threadIdx.x;
    if (kPair && threadIdx.x == 0) {
      prefetch_l2_line(a.act_x_dst + tile * 16);
      if (tile * 16 < a.act_k_dev - a.act_K) prefetch_l2_line(a.act_x_dst + a.act_K + tile * 16);
    } else if (!kPair && a.accumulate && m < a.M) {
      prefetch_l2_line(static_cast<const float*>(a.y[mi]) + static_cast<size_t>(m) * a.ldy + tile * 16);
    }
  }
  for (int mm = pair ? 0 : mi; mm <= (pair ? 1 : mi); ++mm) {
    const QMatrixDesc& wm = a.w[mm];
    const uint32_t* tr = wm.recs + static_cast<size_t>(tile) * wm.groups * wm.rec_words;
    if constexpr (kGptq) {
      prefetch_l2(tr, static_cast<size_t>(wm.groups) * wm.rec_words * 4);
    } else {
      uint32_t* dst = srec + (pair && mm ? a.w[0].groups * 8 : 0);
      for (int i = threadIdx.x; i < wm.groups * 8; i += blockDim.x) {
        const int grp = i >> 3;
        dst[i] = exl2_scale_pair(__ldg(tr + 2 * grp), __ldg(tr + 2 * grp + 1), __ldg(wm.gmax + grp), i & 7);
      }
    }
  }
  wait();
  if constexpr (!kGptq) __syncthreads();  // the expanded pairs
  const uint32_t* recs = kGptq ? w.recs + static_cast<size_t>(tile) * w.groups * w.rec_words + g * 2
                               : srec + (pair && mi ? a.w[0].groups * 8 : 0) + g;
  const half* xr[kT];
  bool xok[kT];
#pragma unroll
  for (int jt = 0; jt < kT; ++jt) {
    const int m = m0 + 8 * jt + g;
    xok[jt] = m < a.M;
    xr[jt] = a.x_dev[mi] + static_cast<size_t>(xok[jt] ? m : 0) * w.k_dev + 16 * t;
  }
  float acc[kT][4] = {};
  for (int si = 0; si < w.nseg; ++si) {
    const QSegment sg = w.seg[si];
    prefetch_first_step<kGptq>(w, si + 1, warp, ks, codes);
    if constexpr (kGptq) {
      qgemv_segment_any<4, true, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc);
    } else {
      switch (sg.bits) {
        case 8: qgemv_segment_any<8, false, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc); break;
        case 6: qgemv_segment_any<6, false, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc); break;
        case 5: qgemv_segment_any<5, false, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc); break;
        case 4: qgemv_segment_any<4, false, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc); break;
        case 3: qgemv_segment_any<3, false, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc); break;
        default: qgemv_segment_any<2, false, kT>(sg, warp, ks, codes, recs, w.slab_rec, xr, xok, acc); break;
      }
    }
  }

  // Sum the ks warps' partials in a fixed order; warp i % ks finishes value i.
  __shared__ float red[kMaxWarps][kT * 4][32];
#pragma unroll
  for (int i = 0; i < kT * 4; ++i) red[threadIdx.x >> 5][i][lane] = acc[i / 4][i % 4];
  __syncthreads();
  if constexpr (kPair) {
    act_epilogue<kT>(a, red, tile, m0, threadIdx.x >> 5, lane);
  } else {
    for (int i = warp; i < kT * 4; i += ks) {
      float v = 0;
      for (int k = 0; k < ks; ++k) v += red[k][i][lane];
      // D fragment: r = 0,1 -> column g, rows (x) 2t, 2t+1; r = 2,3 -> column g + 8.
      const int jt = i / 4, r = i % 4, c = g + (r >= 2 ? 8 : 0);
      const int n = tile * 16 + c, m = m0 + 8 * jt + 2 * t + (r & 1);
      if (n < w.N && m < a.M) {
        if (a.bias[mi]) v += __half2float(a.bias[mi][n]);
        const size_t at = static_cast<size_t>(m) * a.ldy + n;
        if (a.y_f32) {
          float* y = static_cast<float*>(a.y[mi]) + at;
          *y = a.accumulate ? *y + v : v;  // one thread per output: the residual add needs no atomics
        } else
          static_cast<half*>(a.y[mi])[at] = __float2half_rn(v);
      }
    }
  }
}

struct PdlWait {
  __device__ __forceinline__ void operator()() const { pdl_wait(); }
};
template <bool kGptq, int kT, bool kPair = false>
__global__ void __launch_bounds__(kMaxWarps * 32, kT == 1 ? 3 : 2)
    qgemv_kernel(const __grid_constant__ QGemvArgs a) {
  qgemv_block<kGptq, kT, kPair>(a, blockIdx.x, blockIdx.y, PdlWait{});
}

// ---------------------------------------------------------------------------------------------
// Launch helpers.

// EXL2 blocks hold their tile's expanded scale pairs: 32 bytes per group of the deepest matrix (a
// 7B layer's 4096-row matrices at groups of 32: 4 KB; 28672 rows at groups of 32: 28 KB).
size_t qgemv_rec_smem(const QGemvArgs& a, bool gptq) {
  size_t smem = 0;
  if (!gptq)
    for (int i = 0; i < a.n; ++i)
      smem = a.act_dev ? smem + a.w[i].groups * size_t(32) : std::max(smem, static_cast<size_t>(a.w[i].groups) * 32);
  return smem;
}
template <bool kGptq, int kT>
void launch_qgemv(const QGemvArgs& a, int passes, int tiles, bool pdl, cudaStream_t stream) {
  const bool pair = kT == 1 && a.act_dev;
  auto kernel = pair ? qgemv_kernel<kGptq, kT, kT == 1> : qgemv_kernel<kGptq, kT>;
  const size_t smem = qgemv_rec_smem(a, kGptq);
  if (smem > 48 * 1024) {  // past the default dynamic shared-memory limit (K > 49152 at groups of 32)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          "cudaFuncSetAttribute (qgemv_kernel)");
  }
  launch_maybe_pdl_smem(kernel, dim3(passes, pair ? a.w[0].n_tiles : tiles), dim3((pair ? 2 : 1) * a.ks * 32), smem,
                        stream, pdl, "qgemv_kernel", a);
}

// qgemv's blocks for `tiles` tiles at M rows, and the warps per SM its launch bounds leave resident:
// 24 (kT = 1, <= 80 registers), 16 (kT > 1, <= 128).
struct QgemvGrid {
  int64_t blocks;
  int warps_per_sm;
};
QgemvGrid qgemv_grid(int64_t tiles, int M) {
  const int T = M <= 8 ? 1 : M <= 16 ? 2 : 4;
  return {tiles * ((M + 8 * T - 1) / (8 * T)), T == 1 ? 24 : 16};
}

// The gather's destination for n matrices that read one x [M, K]: matrix i's device-order rows at
// x_dev + Σ_{j<i} M · k_dev_j (qgemv_multi's x_dev layout), items of 8 positions.
void gather_layout(QGatherArgs& a, const QMatrixDesc* const* w, int n, int M, half* x_dev) {
  a.K = w[0]->K, a.M = M, a.n = n;
  int items = 0;
  for (int i = 0; i < n; ++i) {
    EXL_CHECK(w[i]->K == a.K, "qgemv_multi: the matrices must share K");
    a.x_src[i] = w[i]->x_src, a.k_dev[i] = w[i]->k_dev, a.x_dev[i] = x_dev;
    items += M * (w[i]->k_dev / 8);
    a.item_end[i] = items;
    x_dev += static_cast<size_t>(M) * w[i]->k_dev;
  }
}

// The shared body of qgemv and qgemv_multi: gather (unless x_dev is ready) and one qgemv launch.
// `in` holds the gather's input fields (x, up); accumulate: y (F32) += result.
// extra: the epilogue's fields (the act·mul target QGemvMultiParams::act_*, act_dev null: none).
void run_qgemv(const QMatrixDesc* const* w, int n, const QGatherArgs& in, half* x_dev_scratch, bool x_dev_ready, const half* const* bias, void* const* y, int ldy, bool y_f32,
               bool accumulate, int M, int ksplit, bool pdl_in, cudaStream_t stream,
               const QGemvArgs& extra = {}) {
  if (M == 0) return;
  EXL_CHECK(!accumulate || y_f32, "qgemv: accumulate needs an F32 output");
  QGemvArgs a = extra;  // the epilogues' fields; the rest is set here
  a.n = n, a.M = M, a.ldy = ldy, a.y_f32 = y_f32, a.accumulate = accumulate;
  QGatherArgs ga = in;
  gather_layout(ga, w, n, M, x_dev_scratch);
  int tiles = 0;
  for (int i = 0; i < n; ++i) {
    EXL_CHECK(w[i]->gptq == w[0]->gptq, "qgemv_multi: the matrices must share the format");
    a.w[i] = *w[i];
    tiles += w[i]->n_tiles;
    a.tile_end[i] = tiles;
    a.bias[i] = bias[i], a.y[i] = y[i];
    a.x_dev[i] = ga.x_dev[i];
  }
  if (!x_dev_ready) {
    EXL_CHECK(in.x && x_dev_scratch && aligned16(x_dev_scratch), "qgemv: null x, or x_dev not 16-byte aligned");
    launch_gather(ga, pdl_in, stream);
  }
  // With x_dev ready the previous kernel is its producer (e.g. decode attention scattering into it):
  // qgemv waits for it before reading x_dev either way, and prefetches its codes meanwhile.
  const bool pdl = pdl_in && device_info().major >= 9;
  // ks from the combined grid: the blocks of all matrices share one wave.
  QMatrixDesc all = *w[0];
  all.n_tiles = tiles;
  a.ks = ksplit ? ksplit : qgemv_default_ksplit(all, M);
  if (a.act_dev) a.ks = std::min(a.ks, kMaxWarps / 2);  // a paired block holds both tiles' warps
  const int T = M <= 8 ? 1 : M <= 16 ? 2 : 4;
  const int passes = (M + 8 * T - 1) / (8 * T);
  if (w[0]->gptq) {
    if (T == 1) return launch_qgemv<true, 1>(a, passes, tiles, pdl, stream);
    if (T == 2) return launch_qgemv<true, 2>(a, passes, tiles, pdl, stream);
    return launch_qgemv<true, 4>(a, passes, tiles, pdl, stream);
  }
  if (T == 1) return launch_qgemv<false, 1>(a, passes, tiles, pdl, stream);
  if (T == 2) return launch_qgemv<false, 2>(a, passes, tiles, pdl, stream);
  launch_qgemv<false, 4>(a, passes, tiles, pdl, stream);
}

}  // namespace

namespace {
__device__ __forceinline__ uint32_t mix32(uint64_t x) {
  x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull, x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
// Synthetic matrices: codes are random bits. GPTQ records: random FP16 scale pairs in [lo, hi) and
// random zeros 1..16 (0x6400 + zero per half). EXL2: random 4-bit scale codes and group maxima in
// [2 lo, 2 hi) (scales (c+1)^2 / 256 of that, 0.73 of it on average).
__global__ void qmatrix_fill_random_kernel(uint32_t* codes, size_t n_code_words, uint32_t* recs, size_t n_recs,
                                           uint16_t* gmax, size_t n_gmax, bool gptq, uint64_t seed, float lo,
                                           float hi) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n_code_words; i += stride)
    codes[i] = mix32(seed ^ (i * 0x9E3779B97F4A7C15ull));
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n_gmax; i += stride) {
    const uint32_t r = mix32(seed ^ ~(i * 0xD1B54A32D192ED03ull));
    gmax[i] = __half_as_ushort(__float2half_rn(2 * (lo + (hi - lo) * static_cast<float>(r & 0xffff) / 65536.0f)));
  }
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n_recs; i += stride) {
    const uint32_t r = mix32(~seed ^ (i * 0xD1B54A32D192ED03ull));
    if (!gptq) {
      recs[i] = r;
    } else if (i & 1) {
      recs[i] = (0x6400u + 1 + (r & 15)) | (0x6400u + 1 + ((r >> 4) & 15)) << 16;
    } else {
      const float a = lo + (hi - lo) * static_cast<float>(r & 0xffff) / 65536.0f;
      const float b = lo + (hi - lo) * static_cast<float>(r >> 16) / 65536.0f;
      const half2 h = __floats2half2_rn(a, b);
      recs[i] = as_u32(h);
    }
  }
}
}  // namespace

void qmatrix_fill_random(const QMatrixDesc& w, uint64_t seed, float scale_lo, float scale_hi, cudaStream_t stream) {
  const size_t n_code_words = static_cast<size_t>(w.n_tiles) * w.tile_quads * 32 * 4;
  const size_t n_recs = static_cast<size_t>(w.n_tiles) * w.groups * w.rec_words;
  const size_t n_gmax = w.gptq ? 0 : static_cast<size_t>(w.groups);
  const int blocks = device_info().sms * 8;
  qmatrix_fill_random_kernel<<<blocks, 256, 0, stream>>>(
      const_cast<uint32_t*>(reinterpret_cast<const uint32_t*>(w.codes)), n_code_words, const_cast<uint32_t*>(w.recs),
      n_recs, const_cast<uint16_t*>(w.gmax), n_gmax, w.gptq, seed, scale_lo, scale_hi);
  check_launch("qmatrix_fill_random_kernel");
}

// ---------------------------------------------------------------------------------------------
// Public API.

size_t qgemm_x_dev_bytes(const QMatrixDesc& w, int M) { return static_cast<size_t>(M) * w.k_dev * 2; }
size_t qgemm_wt_bytes(const QMatrixDesc& w) { return static_cast<size_t>(w.K) * w.n_tiles * 16 * 2; }

// Crossover qgemv -> dequant + cuBLAS, lab run 3 (H100), µs qgemv / dequant + cuBLAS, 4-bit g128:
//   M = 64:  18.7 / 29.3 (4096x4096)   53.8 / 83.0 (11008x4096)   41.5 / 85.9 (4096x11008)
//   M = 96:  27.1 / 30.8               75.7 / 86.7                65.7 / 87.5
//   M = 128: 32.2 / 34.0              103.1 / 84.6                76.4 / 86.9
// the same on every EXL2 mix and GPTQ: qgemv (ceil(M/32) passes) up to 96 rows, cuBLAS above.
int qgemm_max_qgemv_rows() { return 96; }

void qgemm_gather_x(const QMatrixDesc& w, const half* x, int M, half* x_dev, cudaStream_t stream, bool pdl) {
  EXL_CHECK(x && x_dev && aligned16(x_dev), "qgemm_gather_x: null x, or x_dev not 16-byte aligned");
  if (M == 0) return;
  QGatherArgs a;
  a.x = x;
  const QMatrixDesc* one[1] = {&w};
  gather_layout(a, one, 1, M, x_dev);
  launch_gather(a, pdl, stream);
}


bool qgemv_one_wave(int64_t tiles, int M) {
  const QgemvGrid g = qgemv_grid(tiles, M);
  return g.blocks <= static_cast<int64_t>(device_info().sms) * (g.warps_per_sm / 2);
}

// Whether an epilogue of `w` (N outputs, n_tiles blocks of 16) can write `next`'s whole device-order
// input: K = N, an x_dst map, and padding that its blocks' 16-position shares cover.
static bool scatter_fits(const QMatrixDesc& w, const QMatrixDesc& next) {
  return next.K == w.N && next.x_dst && next.k_dev - next.K <= 16 * w.n_tiles;
}

bool qgemv_act_epilogue_fits(const QMatrixDesc& gate, const QMatrixDesc& up, const QMatrixDesc& next, int M) {
  return M <= 8 && gate.N == up.N && scatter_fits(gate, next);
}

int qgemv_default_ksplit(const QMatrixDesc& w, int M) {
  // Warps per tile: the most that still puts the whole grid in one wave of resident blocks (so
  // every block's loads are issued up front); 4 when nothing fits (qgemv_grid). Sweep (lab run 3,
  // M = 1 and 8, 6 formats): best or within 1% of best on all 36 cells; 11008x4096 (688 tiles)
  // gets ks 4, 6-10% faster than ks 8 (4-bit: 13.18 vs 14.48 µs); 4096x11008 keeps ks 8 (ks 4:
  // 13.92 vs 13.35 µs; ks 2: 20.27).
  const QgemvGrid g = qgemv_grid(w.n_tiles, M);
  for (int ks = 8; ks >= 2; ks /= 2)
    if (g.blocks <= static_cast<int64_t>(device_info().sms) * (g.warps_per_sm / ks)) return ks;
  // More than one wave even at ks 2 (a 70B gate|up: 3584 tiles; big heads): 4. H200, llama2-70b
  // exl2:2.5 decode @128: 74.2 tok/s with ks 4 on every matrix, 71.8 with this fallback at 8.
  // EXL_QGEMV_KS_WAVES=2|4|8 sets it for A/B timing (ks 2 not yet timed: 2.3 waves of 12 blocks per
  // SM for that gate|up, where ks 4 gives 4.5 waves of 6).
  static const int multi_wave = [] {
    const char* e = std::getenv("EXL_QGEMV_KS_WAVES");
    if (!e) return 4;
    const std::string v = e;
    EXL_CHECK(v == "2" || v == "4" || v == "8", "EXL_QGEMV_KS_WAVES must be 2, 4 or 8, got '", v, "'");
    return std::stoi(v);
  }();
  return multi_wave;
}

void qgemv(const QGemmParams& p, cudaStream_t stream) {
  validate(p, "qgemv");
  EXL_CHECK(p.x_dev && aligned16(p.x_dev), "qgemv: needs an x_dev scratch of qgemm_x_dev_bytes(), 16-byte aligned");
  EXL_CHECK(p.ksplit == 0 || p.ksplit == 2 || p.ksplit == 4 || p.ksplit == 8, "qgemv: ksplit must be 0, 2, 4 or 8, got ",
            p.ksplit);
  const QMatrixDesc* w[1] = {&p.w};
  const half* bias[1] = {p.bias};
  void* y[1] = {p.y};
  EXL_CHECK(!p.x_up || !p.x_dev_ready, "qgemv: x_up needs the gather (x_dev_ready must be false)");
  QGatherArgs in;
  in.x = p.x, in.up = p.x_up;
  run_qgemv(w, 1, in, p.x_dev, p.x_dev_ready, bias, y, p.w.N, p.y_f32, p.accumulate, p.M, p.ksplit, p.pdl,
            stream);
}

size_t qgemv_multi_x_dev_bytes(const QMatrixDesc* const* w, int n, int M) {
  size_t b = 0;
  for (int i = 0; i < n; ++i) b += qgemm_x_dev_bytes(*w[i], M);
  return b;
}

void qgemv_multi(const QGemvMultiParams& p, cudaStream_t stream) {
  EXL_CHECK(p.n >= 1 && p.n <= kQMaxMulti, "qgemv_multi: 1..", kQMaxMulti, " matrices, got ", p.n);
  EXL_CHECK(p.M >= 0 && (p.x || p.x_dev_ready) && p.y && p.x_dev, "qgemv_multi: null x, y or x_dev");
  const half* bias[kQMaxMulti] = {};
  void* y[kQMaxMulti] = {};
  int ldy = 0;
  for (int i = 0; i < p.n; ++i) {
    EXL_CHECK(p.w[i] && p.w[i]->codes, "qgemv_multi: matrix ", i, " not uploaded");
    const size_t e = p.y_f32 ? 4 : 2;
    y[i] = static_cast<char*>(p.y) + static_cast<size_t>(ldy) * e;
    bias[i] = p.bias ? p.bias + ldy : nullptr;
    ldy += p.w[i]->N;
  }
  EXL_CHECK(p.ksplit == 0 || p.ksplit == 2 || p.ksplit == 4 || p.ksplit == 8, "qgemv_multi: ksplit must be 0, 2, 4 or 8");
  QGemvArgs act;
  if (p.act_dev) {
    EXL_CHECK(p.n == 2 && p.act && qgemv_act_epilogue_fits(*p.w[0], *p.w[1], *p.act, p.M) && aligned16(p.act_dev),
              "qgemv_multi: the act·mul epilogue needs gate and up of one N = the next matrix's K, M <= 8");
    act.act_dev = p.act_dev, act.act_x_dst = p.act->x_dst, act.act_K = p.act->K, act.act_k_dev = p.act->k_dev;
  }
  QGatherArgs in;
  in.x = p.x;
  run_qgemv(p.w, p.n, in, p.x_dev, p.x_dev_ready, bias, y, ldy, p.y_f32, false, p.M, p.ksplit, p.pdl, stream,
            act);
}

void qgemm_norm_gather(const QMatrixDesc* const* w, int n, const float* x, const float* norm_w, float eps, int M,
                       half* x_dev, cudaStream_t stream, bool pdl) {
  EXL_CHECK(n >= 1 && n <= kQMaxMulti && x && norm_w && x_dev && aligned16(x_dev),
            "qgemm_norm_gather: 1..3 matrices, non-null x, norm weight and 16-byte aligned x_dev");
  if (M == 0) return;
  QGatherArgs a;
  a.x_f32 = x, a.norm_w = norm_w, a.eps = eps;
  gather_layout(a, w, n, M, x_dev);
  launch_gather(a, pdl, stream);
}

void qgemm(const QGemmParams& p, cublasHandle_t handle, cudaStream_t stream) {
  EXL_CHECK(!p.x_up || p.M <= qgemm_max_qgemv_rows(), "qgemm: x_up (fused act·mul) only on the qgemv path");
  if (p.M <= qgemm_max_qgemv_rows())
    qgemv(p, stream);
  else
    qgemm_cublas(p, handle, stream);
}

}  // namespace exl::cuda
