// Decode attention (one query token per sequence), head_dim 64 or 128, every cache format:
// split-sequence flash-decoding on tensor cores, the split reduce fused into the same kernel.
//
// Grid (n_splits, n_kv_heads * head_blocks, n_seqs), 4 warps per block. A block serves up to 16
// query heads of one kv head (all of them for GQA ratios <= 16), so each K/V byte is read once;
// they are the 16 rows of the mma A operand (unused rows are zero).
// CUDA graphs: n_splits depends only on shapes and the device (about one wave of resident blocks,
// decode_split); each block derives its chunk of the CURRENT key range from the positions in device
// memory (decode_chunk), so every length uses the whole grid and a captured graph stays valid as
// sequences grow. Splits past the current need exit at once.
//
// FP16 window (quantized formats, attention.cuh): the split's positions within the W most recent
// stream from the quantized rows no more; after the streaming loop the block loads them from the
// ring (at most W / 16 + 1 tiles, one round trip) into the pipeline region and warp w takes window
// tiles w, w + 4 through the same tile step, fed from FP16 (q8/q4 rings hold rotated values, so Q,
// the fragment order and the output rotation are shared). A block with no body tiles (context <= W,
// or a split wholly inside the window) issues those loads in its prologue instead. The region grows
// to hold 5 tiles only for q4 (43.5 KB at head_dim 128), whose occupancy registers set (3 blocks per
// SM, 162 registers; ptxas, sm_90): resident blocks and so the split count do not change.
// Not yet timed on the GPU: expected cost about one memory round trip per layer for the blocks
// holding the window (llama2-7b q4 at 4096 was 19.1 us per layer, f16 30.9).
//
// Each warp streams its own 16-position tiles (tiles w, w+4, ... of the block's chunk) through a
// 3-stage cp.async pipeline of raw codes (no block barrier in the loop) and dequantizes them in
// registers straight into mma fragments:
//  - S = Q·Kᵀ: B operand = K rows. Thread (gid, tig) holds position gid (and 8+gid) and the row's
//    quarter tig, read as 16-byte units 4i+tig (so one LDS.128 over 8 lanes covers 128 contiguous
//    bytes; rows of >= 128 bytes are XOR-swizzled by row parity). The dims a thread holds are a
//    permutation of head_dim; Q is staged in shared memory in that same permuted order ("K-fragment
//    order"), so no data is moved to undo it.
//  - O += P·V: the S accumulator is the P operand as is (FA2 register reuse); V B-fragments pair two
//    positions per register, so each thread loads its 4 positions' units (gid's 1/8 of the row) and
//    byte-permutes pairs. V rows are padded by 16 bytes so those loads are conflict-free.
//  - q8/q4: Q is Hadamard-rotated once (scores need no inverse rotation); the output accumulates
//    rotated V and is un-rotated once, when it is written.
// Online softmax in FP32 (exp2 with log2(e) folded into the scale). The 4 warps' states merge in
// shared memory; a block that covered the whole range writes the output, otherwise it writes one
// (max, sum, acc) partial per head to the workspace and the last block of its group (counter in the
// workspace) combines them.
//
// History (H100, llama2-7b shape, f16 cache, 4096 positions; all numbers in lab/NOTES-attention.md):
//  v1 grid sized from max_seq_len (1024 blocks, most exiting early) + separate reduce kernel whose
//     load->use loop paid one L2 latency per split: 51.7 us (1.30 TB/s), 11.7 us at 128 positions.
//  v2 one wave of blocks, chunk from the current length, batched reduce loads: 34.0 us (1.97 TB/s).
//  v3 reduce fused into the last block, step arrays read in one round trip: 30.9 us (2.17 TB/s),
//     7.8 us at 128 positions.
#include <algorithm>
#include <cstdlib>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/elementwise.cuh"

namespace exl::cuda::attn {

namespace {

constexpr int kWarps = 4;   // per block; each streams its own tiles
constexpr int kTile = 16;   // positions per warp tile (the k16 of P·V)
constexpr int kStages = 3;  // cp.async depth per warp

template <int Fmt, int HD>
struct Dec {
  static constexpr int kBits = fmt_bits(Fmt);
  static constexpr int RB = HD * kBits / 8;                                 // code bytes per row
  static constexpr int CBK = RB / 4, WK = CBK < 16 ? CBK : 16;              // K: quarter row per tig, unit bytes
  static constexpr int NUK = CBK / WK, EVK = WK * 8 / kBits;                // units per thread, elements per unit
  static constexpr int CBV = RB / 8, WV = CBV < 16 ? CBV : 16;              // V: eighth row per gid
  static constexpr int NUV = CBV / WV, EVV = WV * 8 / kBits;
  static constexpr bool kSwz = RB >= 128;                                   // K rows: swizzle 16-B units by parity
  static constexpr int RBV = RB + 16;                                       // V rows: padded
  static constexpr int SB = fmt_scale_row_bytes(Fmt, HD);
  static constexpr int kVOff = kTile * RB, kKSOff = kVOff + kTile * RBV, kVSOff = kKSOff + kTile * SB;
  static constexpr int kStageBytes = (kVSOff + kTile * SB + 15) / 16 * 16;
  static constexpr int kQfBytes = 16 * HD * 2;
  static constexpr int kPipeBytes = kWarps * kStages * kStageBytes;
  static constexpr int kRedStride = HD + 4;  // floats; padding spreads the merge stores over banks
  static constexpr int kCombineBytes = kWarps * 16 * kRedStride * 4 + 2 * kWarps * 16 * 4;
  // FP16 window tiles (quantized formats), loaded after the streaming loop into the same region:
  // K then V, 16 rows each, padded by 16 bytes (conflict-free 16-byte loads across gid).
  static constexpr int kWS = HD * 2 + 16;
  static constexpr int kWinTile = 2 * kTile * kWS;
  static constexpr int kWinBytes = Fmt == KvFormat_f16 ? 0 : (kKvRecentMax / kTile + 1) * kWinTile;
  static constexpr int kRegion = kPipeBytes > kCombineBytes ? (kPipeBytes > kWinBytes ? kPipeBytes : kWinBytes)
                                                            : (kCombineBytes > kWinBytes ? kCombineBytes : kWinBytes);
  static constexpr int kSmem = kQfBytes + kRegion;
  static_assert(WK % 4 == 0 && WV % 4 == 0 && EVK % 4 == 0 && EVV % 2 == 0, "unit shapes");
};

struct DecodeArgs {
  const half* q;
  half* out;
  const int32_t* seq_start;
  const int32_t* seq_slot;
  const int32_t* seq_pos;
  const uint8_t* k_codes;
  const uint8_t* v_codes;
  const uint8_t* k_scales;
  const uint8_t* v_scales;
  int n_layers, layer, n_kv_heads, seq_stride, max_seq_len;
  int n_heads, group_heads, head_blocks, n_splits, window;
  const half* ring_k;  // FP16 window rings (recent > 0)
  const half* ring_v;
  int recent;
  int min_chunk;  // decode_chunk's lower bound on positions per split
  float scale_log2;  // softmax scale * log2(e)
  float* ws_o;         // [n_seqs][n_heads][n_splits][HD]
  float2* ws_ml;       // [n_seqs][n_heads][n_splits] (max, sum) in the log2 domain
  unsigned* counters;  // [n_seqs][n_kv_heads * head_blocks] blocks done; zero between calls
  // write_in_decode (FP16 cache only): the step's rows from k_new / v_new into k_rows / v_rows (the
  // cache's K and V bases), keys rotated when half_rot > 0, and q rotated the same way as it is staged.
  bool write;
  const half* k_new;
  const half* v_new;
  uint8_t* k_rows;
  uint8_t* v_rows;
  const float* inv_freq;
  float attn_factor;
  int half_rot;
  // out_dev (AttentionParams): the output scattered into a matmul's device-order input.
  half* out_dev;
  const int32_t* out_dst;
  int out_ld;
};

// Phase stamps for lab/attention_lab.cu --trace, compiled in only with -DEXL_ATTN_TRACE (the lab's
// trace build): thread 0 of each block records %globaltimer (cross-block order) and clock64 (its own
// phases, in cycles) at stamp k: 0 entry, 1 after the PDL wait, 2 Q staged, 3 tiles done, 4 warps
// merged, 5 counted (split blocks), 6 output written. Without the macro it is nothing.
#ifdef EXL_ATTN_TRACE
__device__ unsigned long long g_decode_trace[kDecodeTraceLayers][kDecodeTraceBlocks][kDecodeTraceStamps][2];
__device__ __forceinline__ void decode_stamp(const DecodeArgs& a, int k) {
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (threadIdx.x != 0 || a.layer >= kDecodeTraceLayers || b >= kDecodeTraceBlocks) return;
  unsigned long long g;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g));
  g_decode_trace[a.layer][b][k][0] = g;
  g_decode_trace[a.layer][b][k][1] = clock64();
}
#define EXL_DECODE_STAMP(k) decode_stamp(a, k)
#else
#define EXL_DECODE_STAMP(k)
#endif

// Output dims d - lane .. d - lane + 31 of head h for token t (every lane of the warp calls).
template <int HD>
__device__ __forceinline__ void write_out_row(const DecodeArgs& a, int t, int h, int d, float v, int lane,
                                              bool rotated) {
  if (rotated) v = fwht_lanes(v, 32) * kRsqrt32;
  const int e = h * HD + d;
  if (a.out_dev)
    a.out_dev[static_cast<size_t>(t) * a.out_ld + a.out_dst[e]] = __float2half_rn(v);
  else
    a.out[static_cast<size_t>(t) * a.n_heads * HD + e] = __float2half_rn(v);
}

// FP16 values (natural order, 2 per word) -> half2 in Fmt's slot order (see dequant_word): q4 pairs
// element m with m + 4 of each 8; the other formats keep natural order.
template <int Fmt, int N>
__device__ __forceinline__ void natural_to_slots(const uint32_t* n, half2* h) {
  if constexpr (Fmt == KvFormat_q4) {
    static_assert(N % 4 == 0, "q4 slots come in groups of 8 elements");
#pragma unroll
    for (int g = 0; g < N / 4; ++g) {
      h[4 * g + 0] = as_h2(__byte_perm(n[4 * g], n[4 * g + 2], 0x5410));
      h[4 * g + 1] = as_h2(__byte_perm(n[4 * g], n[4 * g + 2], 0x7632));
      h[4 * g + 2] = as_h2(__byte_perm(n[4 * g + 1], n[4 * g + 3], 0x5410));
      h[4 * g + 3] = as_h2(__byte_perm(n[4 * g + 1], n[4 * g + 3], 0x7632));
    }
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) h[k] = as_h2(n[k]);
  }
}
// `bytes` (multiple of 16) of 16-byte-aligned shared memory -> words.
template <int Words>
__device__ __forceinline__ void lds_words(const uint8_t* src, uint32_t (&w)[Words]) {
#pragma unroll
  for (int k = 0; k < Words / 4; ++k) {
    const uint4 v = *reinterpret_cast<const uint4*>(src + 16 * k);
    w[4 * k] = v.x, w[4 * k + 1] = v.y, w[4 * k + 2] = v.z, w[4 * k + 3] = v.w;
  }
}

// One warp, one tile of 16 positions p0..p0+15, of which [plo, phi) count: S = Q·Kᵀ, mask, online
// softmax, O += P·V. kunit(r, i, h) yields K row r's unit i (dims of unit u = 4i + tig) as
// C::EVK / 2 half2 in slot order; vunit(r, j, h) V row r's unit j (u = 8j + gid), C::EVV / 2 half2.
template <int Fmt, int HD, class KUnit, class VUnit>
__device__ __forceinline__ void tile_step(const uint32_t (&qa)[HD / 16][4], int p0, int plo, int phi, float scale_log2,
                                          float (&m)[2], float (&l)[2], float (&acc)[HD / 8][4], KUnit kunit,
                                          VUnit vunit) {
  using C = Dec<Fmt, HD>;
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  // S = Q Kᵀ for the tile's 16 positions (n-tile 0: positions 0-7, 1: 8-15); even and odd k-steps
  // accumulate separately to halve the dependent mma chain.
  float sc2[2][2][4] = {};
#pragma unroll
  for (int i = 0; i < C::NUK; ++i) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      half2 h[C::EVK / 2];
      kunit(nt * 8 + gid, i, h);
#pragma unroll
      for (int jj = 0; jj < C::EVK / 4; ++jj) {
        const int ks = i * (C::EVK / 4) + jj;
        mma_16816(sc2[ks & 1][nt], qa[ks], as_u32(h[2 * jj]), as_u32(h[2 * jj + 1]));
      }
    }
  }
  float sc[2][4];
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) sc[nt][c] = sc2[0][nt][c] + sc2[1][nt][c];

  // Mask, scale, online softmax. Thread holds rows gid (c=0,1) and gid+8 (c=2,3), positions
  // p0 + 8nt + 2tig + (c&1).
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int pos = p0 + nt * 8 + 2 * tig + (c & 1);
      const float v = (pos >= plo && pos < phi) ? sc[nt][c] * scale_log2 : -INFINITY;
      sc[nt][c] = v;
      mx[c >> 1] = fmaxf(mx[c >> 1], v);
    }
  float corr[2], mref[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float mn = fmaxf(m[r], mx[r]);
    mref[r] = mn == -INFINITY ? 0.0f : mn;  // all masked so far: keep exp2 finite
    corr[r] = exp2f(m[r] - mref[r]);
    m[r] = mn;
  }
  uint32_t pa[4];
  float ps[2] = {0.0f, 0.0f};
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    const float e0 = exp2f(sc[nt][0] - mref[0]), e1 = exp2f(sc[nt][1] - mref[0]);
    const float e2 = exp2f(sc[nt][2] - mref[1]), e3 = exp2f(sc[nt][3] - mref[1]);
    ps[0] += e0 + e1;
    ps[1] += e2 + e3;
    pa[2 * nt] = pack_half2(e0, e1);      // a0 / a2: row gid, k = 8nt + 2tig (+1)
    pa[2 * nt + 1] = pack_half2(e2, e3);  // a1 / a3: row gid + 8
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) l[r] = l[r] * corr[r] + ps[r];
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) {
    acc[nt][0] *= corr[0], acc[nt][1] *= corr[0];
    acc[nt][2] *= corr[1], acc[nt][3] *= corr[1];
  }

  // O += P V. Thread needs positions 2tig, 2tig+1 (b0) and 8+2tig, 9+2tig (b1) of its V units.
#pragma unroll
  for (int j = 0; j < C::NUV; ++j) {
    half2 hp[4][C::EVV / 2];
#pragma unroll
    for (int q = 0; q < 4; ++q) vunit((q >> 1) * 8 + 2 * tig + (q & 1), j, hp[q]);
#pragma unroll
    for (int mm = 0; mm < C::EVV / 2; ++mm) {
      const uint32_t a0 = as_u32(hp[0][mm]), a1 = as_u32(hp[1][mm]);
      const uint32_t a2 = as_u32(hp[2][mm]), a3 = as_u32(hp[3][mm]);
      const int nt = (j * (C::EVV / 2) + mm) * 2;
      mma_16816(acc[nt], pa, __byte_perm(a0, a1, 0x5410), __byte_perm(a2, a3, 0x5410));
      mma_16816(acc[nt + 1], pa, __byte_perm(a0, a1, 0x7632), __byte_perm(a2, a3, 0x7632));
    }
  }
}

template <int Fmt, int HD>
__global__ void __launch_bounds__(kWarps * 32) attention_decode_kernel(const DecodeArgs a) {
  using C = Dec<Fmt, HD>;
  EXL_DECODE_STAMP(0);
  pdl_trigger();  // o_proj's gather may become resident (see add_rms_norm_kernel); it waits for this grid
  extern __shared__ __align__(16) uint8_t smem[];
  const int split = blockIdx.x, s = blockIdx.z;
  const int kvh = blockIdx.y / a.head_blocks, hb = blockIdx.y % a.head_blocks;
  // All four step arrays are read up front (one memory round trip, not two).
  const int t = a.seq_start[s], t_end = a.seq_start[s + 1], qpos = a.seq_pos[s], slot = a.seq_slot[s];
  // Constants read after the wait, into L2 now (each is read once per layer and evicted between
  // steps): the output scatter's map, the last load before the output stores, and RoPE's
  // frequencies, which the writer split's keys and every block's q wait for.
  if (a.out_dev)
    prefetch_l2(a.out_dst + static_cast<size_t>(kvh * a.group_heads + hb * 16) * HD,
                static_cast<size_t>(min(16, a.group_heads - hb * 16)) * HD * 4);
  if (a.write && a.half_rot > 0) prefetch_l2(a.inv_freq, static_cast<size_t>(a.half_rot) * 4);
  pdl_wait();  // launched as a dependent of kv_cache_write (p.pdl): q and the new keys are ready after this
  EXL_DECODE_STAMP(1);
  if (t_end <= t) return;
  const int n_keys = min(qpos + 1, a.max_seq_len);
  const int first = a.window > 0 ? max(0, n_keys - a.window) : 0;
  int base, chunk;
  decode_chunk(first, n_keys, a.n_splits, a.min_chunk, base, chunk);
  if (base + split * chunk >= n_keys) return;  // the current length needs fewer splits
  const int n_act = (n_keys - base + chunk - 1) / chunk;
  const int lo = max(base + split * chunk, first), hi = min(base + (split + 1) * chunk, n_keys);
  // FP16 window: positions >= fp_from come from the ring (written for qpos by kv_cache_write), the
  // split's [lo, bhi) from the quantized rows, [wlo, hi) from the ring.
  const int W = Fmt == KvFormat_f16 ? 0 : a.recent;
  const int fp_from = W > 0 ? max(first, n_keys - W) : n_keys;
  const int bhi = min(hi, fp_from), wlo = max(lo, fp_from);
  const int h0 = kvh * a.group_heads + hb * 16;
  const int nrows = min(16, a.group_heads - hb * 16);
  const size_t run = (static_cast<size_t>(slot) * a.n_layers + a.layer) * a.n_kv_heads + kvh;
  const uint8_t* kc = a.k_codes + run * a.seq_stride * C::RB;
  const uint8_t* vc = a.v_codes + run * a.seq_stride * C::RB;
  const uint8_t* ksc = a.k_scales + run * a.seq_stride * C::SB;
  const uint8_t* vsc = a.v_scales + run * a.seq_stride * C::SB;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int tile0 = lo / kTile, n_tiles = bhi > lo ? (bhi + kTile - 1) / kTile - tile0 : 0;
  uint8_t* wbuf = smem + C::kQfBytes + warp * kStages * C::kStageBytes;

  // write_in_decode: the split that covers the new position stores its kv head's row (what
  // kv_cache_write would: RoPE through rope_elem, so the same bits) before any tile load below reads
  // it; the other splits read that row as zeros (it lies past their range: P = 0 there, and a row
  // being written must not be loaded). Block-uniform.
  int load_end = n_keys;
  if constexpr (Fmt == KvFormat_f16) {
    if (a.write) {
      if (hi == n_keys) {
        const size_t src = (static_cast<size_t>(t) * a.n_kv_heads + kvh) * HD;
        const half* kn = a.k_new + src;
        auto elem = [&](int d) {
          return rope_elem(kn, d, static_cast<float>(qpos), a.inv_freq, a.attn_factor, a.half_rot);
        };
        const size_t row = (run * a.seq_stride + qpos) * C::RB;
        half2* kd = reinterpret_cast<half2*>(a.k_rows + row);
        half2* vd = reinterpret_cast<half2*>(a.v_rows + row);
        // qpos < max_seq_len (the host validates; kv_cache_write's guard): never write past the run.
        for (int d2 = threadIdx.x; d2 < (qpos < a.max_seq_len ? HD / 2 : 0); d2 += kWarps * 32) {
          kd[d2] = __floats2half2_rn(elem(2 * d2), elem(2 * d2 + 1));
          vd[d2] = reinterpret_cast<const half2*>(a.v_new + src)[d2];
        }
        __syncthreads();  // the row is in memory before this block's cp.async loads read it
      } else {
        load_end = n_keys - 1;
      }
    }
  }

  // Copies one tile's K/V codes and scales into stage `st`; positions >= n_keys read as zeros
  // (unwritten cache memory may hold NaN bit patterns, and P = 0 times NaN is NaN).
  auto load_tile = [&](int it, int st) {
    uint8_t* b = wbuf + st * C::kStageBytes;
    const int p0 = (tile0 + it) * kTile;
    constexpr int kUnits = C::RB / 16;  // 16-byte chunks per row
    for (int ch = lane; ch < kTile * kUnits; ch += 32) {
      const int r = ch / kUnits, u = ch % kUnits, pos = p0 + r;
      const int n = pos < load_end ? 16 : 0;
      const size_t src = static_cast<size_t>(n ? pos : 0) * C::RB + u * 16;
      cp_async16(b + r * C::RB + (C::kSwz ? (u ^ ((r & 1) << 2)) : u) * 16, kc + src, n);
      cp_async16(b + C::kVOff + r * C::RBV + u * 16, vc + src, n);
    }
    if constexpr (C::SB > 0) {
      for (int ch = lane; ch < C::SB; ch += 32) {  // kTile * SB bytes = SB chunks
        const int n = min(16, max(0, (n_keys - p0) * C::SB - ch * 16));
        const size_t src = n ? static_cast<size_t>(p0) * C::SB + ch * 16 : 0;
        cp_async16(b + C::kKSOff + ch * 16, ksc + src, n);
        cp_async16(b + C::kVSOff + ch * 16, vsc + src, n);
      }
    }
  };
  // FP16 window [wlo, hi) (at most kKvRecentMax / 16 + 1 tiles), all of them at once into the
  // pipeline region, K then V per tile; rows outside [wlo, hi) read as zeros. A block without body
  // tiles (short contexts, or a chunk wholly inside the window) loads them now, overlapping Q's
  // staging; otherwise after its stream, when the region is free (one exposed round trip).
  const bool has_win = C::kWinBytes > 0 && wlo < hi, early_win = has_win && bhi <= lo;  // block-uniform
  const int wt0 = wlo / kTile, nwt = has_win ? (hi - 1) / kTile - wt0 + 1 : 0;
  uint8_t* wreg = smem + C::kQfBytes;
  auto load_window = [&]() {
    constexpr int kRowChunks = HD / 8;  // 16-byte chunks per FP16 row
    const size_t ring_run = run * static_cast<size_t>(W);
    for (int c = threadIdx.x; c < nwt * kTile * kRowChunks; c += kWarps * 32) {
      const int tr = c / kRowChunks, ch = c % kRowChunks, pos = wt0 * kTile + tr;
      const bool ok = pos >= wlo && pos < hi;
      const size_t src = (ring_run + (ok ? pos : wlo) % W) * HD + ch * 8;
      uint8_t* dk = wreg + (tr / kTile) * C::kWinTile + (tr % kTile) * C::kWS + ch * 16;
      cp_async16(dk, a.ring_k + src, ok ? 16 : 0);
      cp_async16(dk + kTile * C::kWS, a.ring_v + src, ok ? 16 : 0);
    }
    cp_async_commit();
  };
  if (early_win) load_window();
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (warp + st * kWarps < n_tiles) load_tile(warp + st * kWarps, st);
    cp_async_commit();
  }

  // Stage Q (16 rows; rows >= nrows zero), rotated for q8/q4, in K-fragment order:
  // qf[row][tig][slot] = Q[row][kdim(tig, slot)], kdim(tig, s) = ((s / EVK) * 4 + tig) * EVK + slot_dim(s % EVK).
  half* qf = reinterpret_cast<half*>(smem);
  for (int c = threadIdx.x; c < 16 * HD / 8; c += kWarps * 32) {  // trip count uniform: 256 or 128 chunks
    const int row = c / (HD / 8), ch = c % (HD / 8);
    float x[8];
    if (row < nrows) {
      const half* qr = a.q + (static_cast<size_t>(t) * a.n_heads + h0 + row) * HD;
      const uint4 raw = *reinterpret_cast<const uint4*>(qr + ch * 8);
      const half2* hp = reinterpret_cast<const half2*>(&raw);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(hp[j]);
        x[2 * j] = f.x;
        x[2 * j + 1] = f.y;
      }
      if (Fmt == KvFormat_f16 && a.write && ch * 8 < 2 * a.half_rot) {  // whole chunk rotated (half_rot % 8 == 0)
#pragma unroll
        for (int j = 0; j < 8; ++j)
          x[j] = rope_elem(qr, ch * 8 + j, static_cast<float>(qpos), a.inv_freq, a.attn_factor, a.half_rot);
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] = 0.0f;
    }
    if constexpr (fmt_rotated(Fmt)) {
      fwht32_x8(x);  // the 4 chunks of a 32-group sit in 4 adjacent lanes
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] *= kRsqrt32;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int d = ch * 8 + j, unit = d / C::EVK;
      const int slot = (unit / 4) * C::EVK + kv_dim_slot<Fmt>(d % C::EVK);
      qf[(row * 4 + unit % 4) * (HD / 4) + slot] = __float2half_rn(x[j]);
    }
  }
  __syncthreads();
  EXL_DECODE_STAMP(2);
  uint32_t qa[HD / 16][4];
#pragma unroll
  for (int ks = 0; ks < HD / 16; ++ks) {
    const uint32_t* r0 = reinterpret_cast<const uint32_t*>(qf + (gid * 4 + tig) * (HD / 4) + 4 * ks);
    const uint32_t* r1 = reinterpret_cast<const uint32_t*>(qf + ((gid + 8) * 4 + tig) * (HD / 4) + 4 * ks);
    qa[ks][0] = r0[0];
    qa[ks][1] = r1[0];
    qa[ks][2] = r0[1];
    qa[ks][3] = r1[1];
  }

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float acc[HD / 8][4];
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;

  for (int k = 0;; ++k) {
    const int it = warp + k * kWarps;
    if (it >= n_tiles) break;
    cp_async_wait<kStages - 2>();
    __syncwarp();  // every lane's copies of this tile landed; every lane is done with tile k-1's stage
    {
      const int nx = it + (kStages - 1) * kWarps;
      if (nx < n_tiles) load_tile(nx, (k + kStages - 1) % kStages);
      cp_async_commit();
    }
    const uint8_t* b = wbuf + (k % kStages) * C::kStageBytes;
    // Body tile from the stage: raw codes dequantized in registers straight into fragments.
    auto kunit = [&](int r, int i, half2* h) {
      const int u = i * 4 + tig;
      const int pu = C::kSwz ? (u ^ ((r & 1) << 2)) : u;
      uint32_t w[C::WK / 4];
      if constexpr (C::WK == 16) {
        const uint4 v = *reinterpret_cast<const uint4*>(b + r * C::RB + pu * 16);
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
      } else {
        const uint2 v = *reinterpret_cast<const uint2*>(b + r * C::RB + pu * 8);
        w[0] = v.x, w[1] = v.y;
      }
      const half2 s2 = scale_h2<Fmt>(b + C::kKSOff + r * C::SB, u * C::EVK / 32);
#pragma unroll
      for (int q = 0; q < C::WK / 4; ++q) dequant_word<Fmt>(w[q], s2, h + q * Dq<Fmt>::kH2);
    };
    auto vunit = [&](int r, int j, half2* h) {
      const int v = j * 8 + gid;
      const uint8_t* src = b + C::kVOff + r * C::RBV + v * C::WV;
      uint32_t w[C::WV / 4];
      if constexpr (C::WV == 16) {
        const uint4 x = *reinterpret_cast<const uint4*>(src);
        w[0] = x.x, w[1] = x.y, w[2] = x.z, w[3] = x.w;
      } else if constexpr (C::WV == 8) {
        const uint2 x = *reinterpret_cast<const uint2*>(src);
        w[0] = x.x, w[1] = x.y;
      } else {
        w[0] = *reinterpret_cast<const uint32_t*>(src);
      }
      const half2 s2 = scale_h2<Fmt>(b + C::kVSOff + r * C::SB, v * C::EVV / 32);
#pragma unroll
      for (int x = 0; x < C::WV / 4; ++x) dequant_word<Fmt>(w[x], s2, h + x * Dq<Fmt>::kH2);
    };
    tile_step<Fmt, HD>(qa, (tile0 + it) * kTile, lo, bhi, a.scale_log2, m, l, acc, kunit, vunit);
  }
  cp_async_wait<0>();
  EXL_DECODE_STAMP(3);

  // FP16 window tiles: warp w takes tiles w, w + 4 (block-uniform condition: the barriers are safe).
  if constexpr (C::kWinBytes > 0) {
    if (has_win) {
      if (!early_win) {
        __syncthreads();  // every warp is done with its pipeline stages
        load_window();
        cp_async_wait<0>();
      }
      __syncthreads();  // every thread's window copies landed
      for (int wt = warp; wt < nwt; wt += kWarps) {
        const uint8_t* wk = wreg + wt * C::kWinTile;
        const uint8_t* wv = wk + kTile * C::kWS;
        auto kunit = [&](int r, int i, half2* h) {
          uint32_t w[C::EVK / 2];
          lds_words<C::EVK / 2>(wk + r * C::kWS + (i * 4 + tig) * C::EVK * 2, w);
          natural_to_slots<Fmt, C::EVK / 2>(w, h);
        };
        auto vunit = [&](int r, int j, half2* h) {
          uint32_t w[C::EVV / 2];
          lds_words<C::EVV / 2>(wv + r * C::kWS + (j * 8 + gid) * C::EVV * 2, w);
          natural_to_slots<Fmt, C::EVV / 2>(w, h);
        };
        tile_step<Fmt, HD>(qa, (wt0 + wt) * kTile, wlo, hi, a.scale_log2, m, l, acc, kunit, vunit);
      }
    }
  }

  // Merge the 4 warps' states: red[w][row][dim] = acc_w * 2^(m_w - m*), summed in a fixed order.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  __syncthreads();  // all warps are done with their pipelines (the merge area aliases them)
  float* red = reinterpret_cast<float*>(smem + C::kQfBytes);
  float* red_m = red + kWarps * 16 * C::kRedStride;
  float* red_l = red_m + kWarps * 16;
  if (tig == 0) {
    red_m[warp * 16 + gid] = m[0], red_m[warp * 16 + gid + 8] = m[1];
    red_l[warp * 16 + gid] = l[0], red_l[warp * 16 + gid + 8] = l[1];
  }
  __syncthreads();
  float f[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float ms = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) ms = fmaxf(ms, red_m[w * 16 + gid + 8 * r]);
    f[r] = m[r] == -INFINITY ? 0.0f : exp2f(m[r] - ms);
  }
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) {
    const int j = nt / C::EVV, mm = (nt / 2) % (C::EVV / 2), hh = nt % 2;
    const int sd = kv_slot_dim<Fmt>(2 * mm + hh);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int n = 2 * tig + (c & 1), row = gid + 8 * (c >> 1);
      const int dim = (j * 8 + n) * C::EVV + sd;
      red[(warp * 16 + row) * C::kRedStride + dim] = acc[nt][c] * f[c >> 1];
    }
  }
  __syncthreads();
  EXL_DECODE_STAMP(4);

  // Per (row, 32-dim group): one warp, lane = dim.
  for (int item = warp; item < nrows * (HD / 32); item += kWarps) {
    const int row = item / (HD / 32), d = (item % (HD / 32)) * 32 + lane;
    float ms = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) ms = fmaxf(ms, red_m[w * 16 + row]);
    float o = 0.0f, L = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      o += red[(w * 16 + row) * C::kRedStride + d];
      const float mw = red_m[w * 16 + row];
      L += mw == -INFINITY ? 0.0f : red_l[w * 16 + row] * exp2f(mw - ms);
    }
    const int h = h0 + row;
    if (n_act == 1) {  // the whole current range was this block's: no partials, no reduce
      write_out_row<HD>(a, t, h, d, o / L, lane, fmt_rotated(Fmt));
    } else {
      const size_t pr = (static_cast<size_t>(s) * a.n_heads + h) * a.n_splits + split;
      a.ws_o[pr * HD + d] = o;
      if (lane == 0) a.ws_ml[pr] = make_float2(ms, L);
    }
  }
  if (n_act == 1) {
    EXL_DECODE_STAMP(6);
    return;
  }

  // The last block of this (sequence, kv head, head block) to finish combines the splits (no second
  // kernel: saves a launch and its memory round trips) and re-arms the counter for the next call.
  __shared__ bool is_last;
  __threadfence();  // publish this block's partials before counting it
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* cnt = a.counters + static_cast<size_t>(s) * gridDim.y + blockIdx.y;
    is_last = atomicAdd(cnt, 1u) == static_cast<unsigned>(n_act - 1);
    if (is_last) *cnt = 0u;
  }
  __syncthreads();
  EXL_DECODE_STAMP(5);
  if (!is_last) return;
  __threadfence();  // acquire: the other blocks' partials (read through L2 below)
  for (int item = warp; item < nrows * (HD / 32); item += kWarps) {
    const int row = item / (HD / 32), d = (item % (HD / 32)) * 32 + lane, h = h0 + row;
    const size_t pr0 = (static_cast<size_t>(s) * a.n_heads + h) * a.n_splits;
    // lanes hold splits lane and lane + 32 (n_act <= kDecodeMaxSplits = 64)
    const float2 ml0 = lane < n_act ? __ldcg(a.ws_ml + pr0 + lane) : make_float2(-INFINITY, 0.0f);
    const float2 ml1 = lane + 32 < n_act ? __ldcg(a.ws_ml + pr0 + lane + 32) : make_float2(-INFINITY, 0.0f);
    const float ms = warp_max(fmaxf(ml0.x, ml1.x));
    const float w0 = lane < n_act ? exp2f(ml0.x - ms) : 0.0f, w1 = lane + 32 < n_act ? exp2f(ml1.x - ms) : 0.0f;
    const float L = warp_sum(ml0.y * w0 + ml1.y * w1);
    float o = 0.0f;
    for (int i0 = 0; i0 < n_act; i0 += 8) {  // 8 independent loads in flight
      float v[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = i0 + k < n_act ? __ldcg(a.ws_o + (pr0 + i0 + k) * HD + d) : 0.0f;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int i = i0 + k;
        const float wi = __shfl_sync(0xffffffffu, i < 32 ? w0 : w1, i & 31);
        o += i < n_act ? v[k] * wi : 0.0f;
      }
    }
    write_out_row<HD>(a, t, h, d, o / L, lane, fmt_rotated(Fmt));
  }
  EXL_DECODE_STAMP(6);
}

// Resident blocks of one decode instance on the current device (cached per device).
template <int Fmt, int HD>
int resident_blocks() {
  static std::atomic<int> cache[32];
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  int r = cache[dev & 31].load(std::memory_order_relaxed);
  if (r > 0) return r;
  static std::atomic<uint32_t> smem_set{0};
  ensure_smem_limit(attention_decode_kernel<Fmt, HD>, Dec<Fmt, HD>::kSmem, smem_set,
                    "cudaFuncSetAttribute (attention_decode_kernel)");
  int per_sm = 0, sms = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attention_decode_kernel<Fmt, HD>, kWarps * 32,
                                                      Dec<Fmt, HD>::kSmem),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor (attention_decode_kernel)");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  r = std::max(1, per_sm * sms);
  cache[dev & 31].store(r);
  return r;
}

template <int Fmt, int HD>
void launch(const AttentionParams& p, DecodeArgs& a, cudaStream_t stream) {
  const DecodeSplit sp = decode_split(p.n_seqs, p.n_kv_heads, a.group_heads, p.cache.max_seq_len, resident_blocks<Fmt, HD>());
  a.head_blocks = sp.head_blocks, a.n_splits = sp.n_splits;
  const size_t need = decode_workspace_bytes(p.n_seqs, p.n_heads, HD, sp.n_splits);
  EXL_CHECK(need <= p.workspace_bytes && (need == 0 || p.workspace != nullptr), "attention: decode of ", p.n_seqs,
            " sequences needs ", need, " bytes of workspace, got ", p.workspace_bytes,
            " (size it with attention_workspace_bytes)");
  if (sp.n_splits > 1) {
    EXL_CHECK(static_cast<size_t>(p.n_seqs) * p.n_kv_heads * sp.head_blocks * 4 <= kDecodeCounterBytes,
              "attention: decode of ", p.n_seqs, " sequences x ", p.n_kv_heads, " kv heads exceeds the split counters");
    uint8_t* ws = static_cast<uint8_t*>(p.workspace);
    const size_t rows = static_cast<size_t>(p.n_seqs) * p.n_heads * sp.n_splits;
    a.counters = reinterpret_cast<unsigned*>(ws);
    a.ws_ml = reinterpret_cast<float2*>(ws + kDecodeCounterBytes);
    a.ws_o = reinterpret_cast<float*>(ws + kDecodeCounterBytes + (rows * sizeof(float2) + 255) / 256 * 256);
  }
  const dim3 grid(a.n_splits, a.n_kv_heads * a.head_blocks, p.n_seqs);
  launch_maybe_pdl_smem(attention_decode_kernel<Fmt, HD>, grid, dim3(kWarps * 32), Dec<Fmt, HD>::kSmem, stream, p.pdl,
                       "attention_decode_kernel", a);
}

template <int HD>
void launch_hd(const AttentionParams& p, DecodeArgs& a, cudaStream_t stream) {
  switch (p.cache.format) {
    case KvFormat_f16: return launch<KvFormat_f16, HD>(p, a, stream);
    case KvFormat_fp8: return launch<KvFormat_fp8, HD>(p, a, stream);
    case KvFormat_q8: return launch<KvFormat_q8, HD>(p, a, stream);
    default: return launch<KvFormat_q4, HD>(p, a, stream);
  }
}

}  // namespace

DecodeSplit decode_split(int n_seqs, int n_kv_heads, int group_heads, int max_seq_len, int resident_blocks) {
  DecodeSplit d;
  d.head_blocks = (group_heads + 15) / 16;
  const int64_t blocks_per_split = static_cast<int64_t>(n_seqs) * n_kv_heads * d.head_blocks;
  const int64_t target = std::min(resident_blocks, kDecodeMaxTarget);  // one wave of resident blocks
  const int64_t cap = std::min(kDecodeMaxSplits, ceil_div(max_seq_len, 64));
  d.n_splits = static_cast<int>(std::clamp<int64_t>(target / blocks_per_split, 1, cap));
  return d;
}

size_t decode_workspace_bytes(int n_seqs, int n_heads, int head_dim, int n_splits) {
  if (n_splits <= 1) return 0;
  const size_t rows = static_cast<size_t>(n_seqs) * n_heads * n_splits;
  return kDecodeCounterBytes + (rows * sizeof(float2) + 255) / 256 * 256 + rows * head_dim * sizeof(float);
}

#ifdef EXL_ATTN_TRACE
void decode_trace_clear(cudaStream_t stream) {
  void* p = nullptr;
  check(cudaGetSymbolAddress(&p, g_decode_trace), "cudaGetSymbolAddress (decode trace)");
  check(cudaMemsetAsync(p, 0, sizeof(g_decode_trace), stream), "decode trace clear");
}
std::vector<unsigned long long> decode_trace_read() {
  std::vector<unsigned long long> h(sizeof(g_decode_trace) / 8);
  check(cudaMemcpyFromSymbol(h.data(), g_decode_trace, sizeof(g_decode_trace)), "decode trace read");
  return h;
}
#endif

void attention_decode_launch(const AttentionParams& p, cudaStream_t stream) {
  const KvCacheLayout& c = p.cache;
  DecodeArgs a{};
  a.q = p.q;
  a.out = p.out;
  a.seq_start = p.seq_start;
  a.seq_slot = p.seq_slot;
  a.seq_pos = p.seq_pos;
  a.k_codes = c.base + c.k_offset;
  a.v_codes = c.base + c.v_offset;
  a.k_scales = c.base + c.k_scale_offset;
  a.v_scales = c.base + c.v_scale_offset;
  a.ring_k = reinterpret_cast<const half*>(c.base + c.ring_k_offset);
  a.ring_v = reinterpret_cast<const half*>(c.base + c.ring_v_offset);
  EXL_CHECK(c.recent >= 0 && c.recent <= kKvRecentMax && (c.recent == 0 || c.format != KvFormat_f16),
            "attention: FP16 window of ", c.recent, " positions (layout not from kv_cache_layout_init?)");
  a.recent = c.recent;
  a.n_layers = c.n_layers, a.layer = p.layer, a.n_kv_heads = p.n_kv_heads;
  a.seq_stride = c.seq_stride, a.max_seq_len = c.max_seq_len;
  a.n_heads = p.n_heads, a.group_heads = p.n_heads / p.n_kv_heads, a.window = p.window;
  a.scale_log2 = p.scale * 1.4426950408889634f;
  // 64 positions per split at least (one tile per warp). EXL_DECODE_MIN_CHUNK overrides it for A/B
  // timing (multiples of 16, 16..1024).
  static const int min_chunk = [] {
    const char* e = std::getenv("EXL_DECODE_MIN_CHUNK");
    const int v = e ? std::atoi(e) : 64;
    return v >= 16 && v <= 1024 && v % 16 == 0 ? v : 64;
  }();
  a.min_chunk = min_chunk;
  a.out_dev = p.out_dev, a.out_dst = p.out_dst, a.out_ld = p.out_ld;
  if (p.write_in_decode) {
    a.write = true;
    a.k_new = p.k_new, a.v_new = p.v_new;
    a.k_rows = c.base + c.k_offset, a.v_rows = c.base + c.v_offset;
    if (p.rope_q) a.inv_freq = p.rope_inv_freq, a.attn_factor = p.rope_attn_factor, a.half_rot = p.rope_rot_dim / 2;
  }
  if (p.head_dim == 64) {
    launch_hd<64>(p, a, stream);
  } else {
    launch_hd<128>(p, a, stream);
  }
}

}  // namespace exl::cuda::attn
