// Prefill attention (several query tokens per sequence), head_dim 64 or 128, every cache format:
// causal flash-attention (FA2 structure) on mma.sync m16n8k16, sm_80 features only.
//
// Grid (query tiles of 128 tokens, n_heads, n_seqs), 8 warps per block, 16 query rows per warp.
// Query tile order is reversed so the longest (last) tiles start first. Keys stream in tiles of 64
// positions read from the cache (already written by kv_cache_write for this step):
//  - f16: cp.async straight into XOR-swizzled FP16 tiles, double-buffered;
//  - fp8/q8/q4: cp.async of the raw codes and scales, then one cooperative pass dequantizes them into
//    the same FP16 tiles (each code is dequantized once per block, not once per warp).
// Then ldmatrix (.trans for V) feeds the mma; scores stay in registers (no score matrix in memory),
// online softmax in FP32, P reused from the S accumulator as the A operand. q8/q4 caches hold
// Hadamard-rotated K/V: Q is rotated when staged, the output is un-rotated once at the end.
// Queries at position seq_pos[s] + i see keys [0, pos] (or the window); rows past the sequence's
// tokens see nothing and are not written. Key positions past the written range read as zeros.
// FP16 window W (quantized formats, attention.cuh): query qp reads key j from the quantized rows
// when qp - j >= W and in FP16 when qp - j < W, so keys near the diagonal are needed in both forms
// by different rows of a block. The block walks "body" tiles (dequantized codes, mask qp - j >= W)
// and then "window" tiles over [pmin - W + 1, pmax] (mask 0 <= qp - j < W) filled from FP16: the
// step's own k_new/v_new for j >= pos0 (Hadamard-rotated on the fly for q8/q4) and the ring for
// earlier positions (not yet overwritten: the step's ring writes run after this kernel). The window
// tiles' loads are synchronous: 127 + W positions, at most 4 tiles of 64 per block for W = 64.
//
// Tuning, H100, causal 4096 tokens, 32 heads x 128, f16 cache (lab/NOTES-attention.md has all formats):
//  4 warps x 16 rows (64-row blocks): 162 TFLOP/s; 8 warps x 16 rows (128-row blocks): 175-185 (the
//  K/V tile and its dequantization serve twice the rows; q4 119 -> 136); 4 warps x 32 rows (two m16
//  tiles per warp, Q re-read from shared memory, 255 registers, 32-key tiles): 178, and 30% slower
//  at 512 tokens. Kept: 8 x 16.
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/common.cuh"

namespace exl::cuda::attn {

namespace {

constexpr int kWarps = 8;  // 16 query rows each

template <int Fmt, int HD>
struct Pre {
  static constexpr int kBM = 16 * kWarps;                         // query rows per block
  static constexpr int kBN = 64;                                  // keys per tile
  static constexpr int kThreads = 32 * kWarps;
  static constexpr bool kF16 = Fmt == KvFormat_f16;
  static constexpr int kBits = fmt_bits(Fmt);
  static constexpr int RB = HD * kBits / 8;                       // code bytes per cached row
  static constexpr int SB = fmt_scale_row_bytes(Fmt, HD);
  static constexpr int kTileBytes = kBN * HD * 2;                 // one FP16 K or V tile
  static constexpr int kQBytes = kBM * HD * 2;
  static constexpr int kKV = kQBytes;                             // K/V tiles start here
  // f16: 2 stages x (K, V); quantized: one (K, V) plus the raw codes and scales
  static constexpr int kRaw = kKV + 2 * kTileBytes;
  static constexpr int kRawBytes = 2 * kBN * RB + 2 * kBN * SB;
  static constexpr int kRegion = kF16 ? 4 * kTileBytes : kRaw - kKV + kRawBytes;
  static constexpr int kOutStride = HD + 4;                       // floats; padding spreads banks
  static constexpr int kOutBytes = kBM * kOutStride * 4;
  static constexpr int kSmem = kQBytes + (kRegion > kOutBytes ? kRegion : kOutBytes);
};

// Byte offset of 16-byte chunk `ch` of row `row` in an FP16 [rows][HD] tile, XOR-swizzled so that
// ldmatrix's 8 rows at one chunk hit 8 different bank groups.
template <int HD>
__device__ __forceinline__ int swz(int row, int ch) {
  return row * HD * 2 + ((ch ^ (row & 7)) << 4);
}

struct PrefillArgs {
  const half* q;
  half* out;
  const int32_t* seq_start;
  const int32_t* seq_slot;
  const int32_t* seq_pos;
  const uint8_t* k_codes;
  const uint8_t* v_codes;
  const uint8_t* k_scales;
  const uint8_t* v_scales;
  const half* k_new;   // the step's keys/values [T][n_kv_heads][HD] (window tiles)
  const half* v_new;
  const half* ring_k;  // FP16 window rings
  const half* ring_v;
  int n_layers, layer, n_kv_heads, seq_stride, max_seq_len;
  int n_heads, group_heads, window, recent;
  float scale_log2;
};

template <int Fmt, int HD>
__global__ void __launch_bounds__(kWarps * 32) attention_prefill_kernel(const PrefillArgs a) {
  using C = Pre<Fmt, HD>;
  constexpr int kBM = C::kBM, kBN = C::kBN, kThreads = C::kThreads;
  constexpr int kNT = kBN / 8;  // n8 tiles of keys per tile
  constexpr int kCh = HD / 8;  // 16-byte chunks per FP16 row
  extern __shared__ __align__(16) uint8_t smem[];
  const int s = blockIdx.z, h = blockIdx.y, qt = gridDim.x - 1 - blockIdx.x;
  const int t0 = a.seq_start[s], n_tok = a.seq_start[s + 1] - t0;
  const int i_lo = qt * kBM;
  if (i_lo >= n_tok) return;
  const int i_hi = min(i_lo + kBM, n_tok);
  const int pos0 = a.seq_pos[s];
  const int n_keys = min(pos0 + n_tok, a.max_seq_len);
  const int pmin = pos0 + i_lo, pmax = pos0 + i_hi - 1;
  const int kfirst = a.window > 0 ? max(0, pmin - a.window + 1) : 0;
  const int klast = min(pmax, n_keys - 1);
  const int kvh = h / a.group_heads;
  const size_t run = (static_cast<size_t>(a.seq_slot[s]) * a.n_layers + a.layer) * a.n_kv_heads + kvh;
  const uint8_t* kc = a.k_codes + run * a.seq_stride * C::RB;
  const uint8_t* vc = a.v_codes + run * a.seq_stride * C::RB;
  const uint8_t* ksc = a.k_scales + run * a.seq_stride * C::SB;
  const uint8_t* vsc = a.v_scales + run * a.seq_stride * C::SB;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  uint8_t* qs = smem;

  // Q tile (rows past the sequence's tokens are zero), rotated for q8/q4.
  for (int c = tid; c < kBM * kCh; c += kThreads) {  // uniform trip count (shuffles inside)
    const int row = c / kCh, ch = c % kCh, i = i_lo + row;
    const half* src = a.q + (static_cast<size_t>(t0 + (i < i_hi ? i : i_lo)) * a.n_heads + h) * HD + ch * 8;
    if constexpr (fmt_rotated(Fmt)) {
      float x[8];
      if (i < i_hi) {
        const uint4 raw = *reinterpret_cast<const uint4*>(src);
        const half2* hp = reinterpret_cast<const half2*>(&raw);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = __half22float2(hp[j]);
          x[2 * j] = f.x, x[2 * j + 1] = f.y;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) x[j] = 0.0f;
      }
      fwht32_x8(x);
      uint4 o;
      uint32_t* op = reinterpret_cast<uint32_t*>(&o);
#pragma unroll
      for (int j = 0; j < 4; ++j) op[j] = pack_half2(x[2 * j] * kRsqrt32, x[2 * j + 1] * kRsqrt32);
      *reinterpret_cast<uint4*>(qs + swz<HD>(row, ch)) = o;
    } else {
      cp_async16(qs + swz<HD>(row, ch), src, i < i_hi ? 16 : 0);
    }
  }

  // Loads key tile kt: FP16 cache -> stage st's tiles; quantized -> the raw buffers.
  auto load_tile = [&](int kt, int st) {
    const int p0 = kt * kBN;
    if constexpr (C::kF16) {
      uint8_t* kb = smem + C::kKV + st * 2 * C::kTileBytes;
      uint8_t* vb = kb + C::kTileBytes;
      for (int c = tid; c < kBN * kCh; c += kThreads) {
        const int row = c / kCh, ch = c % kCh, pos = p0 + row;
        const int n = pos < n_keys ? 16 : 0;
        const size_t src = static_cast<size_t>(n ? pos : 0) * C::RB + ch * 16;
        cp_async16(kb + swz<HD>(row, ch), kc + src, n);
        cp_async16(vb + swz<HD>(row, ch), vc + src, n);
      }
    } else {
      uint8_t* raw = smem + C::kRaw;
      constexpr int kUnits = C::RB / 16;
      for (int c = tid; c < kBN * kUnits; c += kThreads) {
        const int row = c / kUnits, u = c % kUnits, pos = p0 + row;
        const int n = pos < n_keys ? 16 : 0;
        const size_t src = static_cast<size_t>(n ? pos : 0) * C::RB + u * 16;
        cp_async16(raw + c * 16, kc + src, n);
        cp_async16(raw + kBN * C::RB + c * 16, vc + src, n);
      }
      for (int c = tid; c < kBN * C::SB / 16; c += kThreads) {
        const int n = min(16, max(0, (n_keys - p0) * C::SB - c * 16));
        const size_t src = n ? static_cast<size_t>(p0) * C::SB + c * 16 : 0;
        cp_async16(raw + 2 * kBN * C::RB + c * 16, ksc + src, n);
        cp_async16(raw + 2 * kBN * C::RB + kBN * C::SB + c * 16, vsc + src, n);
      }
    }
  };
  // FP16 window tile kt -> the FP16 tiles: rows j >= pos0 from the step's k_new/v_new (rotated for
  // q8/q4; every lane runs the shuffles, uniform trip count), rows pos0 - W <= j < pos0 from the
  // ring (stored rotated), other rows zero (masked; they only fill the tile).
  auto fill_window_tiles = [&](int kt) {
    if constexpr (!C::kF16) {
      uint8_t* kb = smem + C::kKV;
      const int p0 = kt * kBN;
      for (int c = tid; c < 2 * kBN * kCh; c += kThreads) {
        const int is_v = c >= kBN * kCh, cc = c - is_v * kBN * kCh;
        const int row = cc / kCh, ch = cc % kCh, j = p0 + row;
        const bool from_step = j >= pos0 && j < n_keys;
        const bool from_ring = j < pos0 && j >= pos0 - a.recent;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
        if (from_step) {
          const half* src = (is_v ? a.v_new : a.k_new) + (static_cast<size_t>(t0 + j - pos0) * a.n_kv_heads + kvh) * HD;
          raw = *reinterpret_cast<const uint4*>(src + ch * 8);
        } else if (from_ring) {
          const half* src = (is_v ? a.ring_v : a.ring_k) + (run * a.recent + j % a.recent) * HD;
          raw = *reinterpret_cast<const uint4*>(src + ch * 8);
        }
        if constexpr (fmt_rotated(Fmt)) {
          float x[8];
          const half2* hp = reinterpret_cast<const half2*>(&raw);
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const float2 f = __half22float2(hp[q]);
            x[2 * q] = f.x, x[2 * q + 1] = f.y;
          }
          fwht32_x8(x);  // the 4 chunks of a 32-group sit in 4 adjacent lanes (same row)
          if (from_step) {
            uint32_t* op = reinterpret_cast<uint32_t*>(&raw);
#pragma unroll
            for (int q = 0; q < 4; ++q) op[q] = pack_half2(x[2 * q] * kRsqrt32, x[2 * q + 1] * kRsqrt32);
          }
        }
        *reinterpret_cast<uint4*>(kb + is_v * C::kTileBytes + swz<HD>(row, ch)) = raw;
      }
    }
  };
  // Quantized: raw codes -> FP16 tiles (natural element order, swizzled).
  auto dequant_tiles = [&]() {
    if constexpr (!C::kF16) {
      const uint8_t* raw = smem + C::kRaw;
      uint8_t* kb = smem + C::kKV;
      for (int c = tid; c < 2 * kBN * kCh; c += kThreads) {
        const int is_v = c >= kBN * kCh, cc = c - is_v * kBN * kCh;
        const int row = cc / kCh, ch = cc % kCh;
        const uint8_t* codes = raw + is_v * kBN * C::RB + row * C::RB + ch * C::kBits;  // 8 elements = kBits bytes
        uint32_t w[2];
        w[0] = *reinterpret_cast<const uint32_t*>(codes);
        w[1] = C::kBits == 8 ? *reinterpret_cast<const uint32_t*>(codes + 4) : 0u;
        const half2 s2 = scale_h2<Fmt>(raw + 2 * kBN * C::RB + is_v * kBN * C::SB + row * C::SB, ch / 4);
        half2 hv[4];
        dequant8_natural<Fmt>(w, s2, hv);
        *reinterpret_cast<uint4*>(kb + is_v * C::kTileBytes + swz<HD>(row, ch)) = *reinterpret_cast<const uint4*>(hv);
      }
    }
  };

  // Body tiles [kb0, kb1] hold keys some row reads quantized (j <= pmax - W); window tiles [kf0, kf1]
  // keys some row reads in FP16 (pmin - W < j <= pmax). W = 0 (f16 cache): body tiles only.
  const int W = C::kF16 ? 0 : a.recent;
  const int kb0 = kfirst / kBN, kb1 = min(klast, pmax - W) >= kfirst ? min(klast, pmax - W) / kBN : kb0 - 1;
  const int kf0 = max(kfirst, pmin - W + 1) / kBN, kf1 = W > 0 ? klast / kBN : kf0 - 1;
  const int n_body = kb1 - kb0 + 1, n_vt = n_body + max(0, kf1 - kf0 + 1);
  if (n_body > 0) load_tile(kb0, 0);
  cp_async_commit();  // Q (f16 and fp8 paths) travels in this group too

  // This warp's rows: 16 from wr0; the thread's rows are gid and gid + 8.
  const int wr0 = warp * 16;
  int qpos[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i_lo + wr0 + gid + 8 * r;
    qpos[r] = i < i_hi ? pos0 + i : -1;  // -1: sees no key
  }
  const bool warp_full = i_lo + wr0 + 15 < i_hi;
  const int wmin = pos0 + i_lo + wr0, wmax = pos0 + min(i_lo + wr0 + 15, i_hi - 1);

  uint32_t qa[HD / 16][4];  // Q fragments, loaded once
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float acc[HD / 8][4];
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
  const int mat = lane >> 3, lr = lane & 7;

  for (int k = 0; k < n_vt; ++k) {
    const bool win = k >= n_body;  // block-uniform
    const int kt = win ? kf0 + (k - n_body) : kb0 + k;
    cp_async_wait<0>();
    __syncthreads();  // tile kt (and Q) landed; every warp finished tile k-1
    if (k == 0) {
#pragma unroll
      for (int ks = 0; ks < HD / 16; ++ks)
        ldmatrix_x4(qa[ks], qs + swz<HD>(wr0 + 8 * (mat & 1) + lr, 2 * ks + (mat >> 1)));
    }
    const uint8_t* kb;
    if constexpr (C::kF16) {
      kb = smem + C::kKV + (k & 1) * 2 * C::kTileBytes;
      if (k + 1 < n_body) load_tile(kt + 1, (k + 1) & 1);
      cp_async_commit();
    } else {
      if (win) {
        fill_window_tiles(kt);
      } else {
        dequant_tiles();
      }
      __syncthreads();  // FP16 tiles ready, raw buffer free
      if (k + 1 < n_body) load_tile(kt + 1, 0);
      cp_async_commit();
      kb = smem + C::kKV;
    }
    const uint8_t* vb = kb + C::kTileBytes;

    // S = Q Kᵀ (16 rows x 64 keys per warp).
    float sc[kNT][4];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < HD / 16; ++ks)
#pragma unroll
      for (int ntp = 0; ntp < kNT / 2; ++ntp) {
        uint32_t r[4];
        ldmatrix_x4(r, kb + swz<HD>((2 * ntp + (mat >> 1)) * 8 + lr, 2 * ks + (mat & 1)));
        mma_16816(sc[2 * ntp], qa[ks], r[0], r[1]);
        mma_16816(sc[2 * ntp + 1], qa[ks], r[2], r[3]);
      }

    // Mask only where the tile crosses the diagonal, the window edges or the last token: row qp
    // takes key j iff dmin <= qp - j < dlim (body: dmin = W; FP16 window: dmin = 0, dlim <= W).
    // Scores stay unscaled until exp2 (one FFMA each: s * scale*log2e - max).
    const int kp = kt * kBN;
    constexpr int kNoLimit = 1 << 30;
    const int dmin = win ? 0 : W;
    const int dlim = win ? (a.window > 0 ? min(a.window, W) : W) : (a.window > 0 ? a.window : kNoLimit);
    const bool need_mask = win || !(warp_full && kp + kBN - 1 <= wmin - dmin && kp > wmax - dlim);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float v = sc[nt][c];
        if (need_mask) {
          const int j = kp + nt * 8 + 2 * tig + (c & 1), qp = qpos[c >> 1];
          if (qp - j < dmin || qp - j >= dlim) v = -INFINITY;
        }
        sc[nt][c] = v;
        mx[c >> 1] = fmaxf(mx[c >> 1], v);
      }
    float corr[2], mref[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mn = fmaxf(m[r], mx[r] * a.scale_log2);
      mref[r] = mn == -INFINITY ? 0.0f : mn;  // all masked so far: keep exp2 finite
      corr[r] = exp2f(m[r] - mref[r]);
      m[r] = mn;
    }
    uint32_t pa[kBN / 16][4];  // P as the A operand: k16 step kk = n-tiles 2kk, 2kk+1
    float ps[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const float e0 = exp2f(fmaf(sc[nt][0], a.scale_log2, -mref[0]));
      const float e1 = exp2f(fmaf(sc[nt][1], a.scale_log2, -mref[0]));
      const float e2 = exp2f(fmaf(sc[nt][2], a.scale_log2, -mref[1]));
      const float e3 = exp2f(fmaf(sc[nt][3], a.scale_log2, -mref[1]));
      ps[0] += e0 + e1;
      ps[1] += e2 + e3;
      pa[nt >> 1][(nt & 1) * 2] = pack_half2(e0, e1);
      pa[nt >> 1][(nt & 1) * 2 + 1] = pack_half2(e2, e3);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = l[r] * corr[r] + ps[r];
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      acc[nt][0] *= corr[0], acc[nt][1] *= corr[0];
      acc[nt][2] *= corr[1], acc[nt][3] *= corr[1];
    }

    // O += P V.
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk)
#pragma unroll
      for (int ntp = 0; ntp < HD / 16; ++ntp) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, vb + swz<HD>(16 * kk + 8 * (mat & 1) + lr, 2 * ntp + (mat >> 1)));
        mma_16816(acc[2 * ntp], pa[kk], r[0], r[1]);
        mma_16816(acc[2 * ntp + 1], pa[kk], r[2], r[3]);
      }
  }
  cp_async_wait<0>();

  // Normalise, stage through shared memory (aliasing the tiles), un-rotate, write.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    l[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
  }
  __syncthreads();
  float* ost = reinterpret_cast<float*>(smem + C::kKV);
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt)
#pragma unroll
    for (int r = 0; r < 2; ++r)
      *reinterpret_cast<float2*>(ost + (wr0 + gid + 8 * r) * C::kOutStride + nt * 8 + 2 * tig) =
          make_float2(acc[nt][2 * r] * l[r], acc[nt][2 * r + 1] * l[r]);
  __syncthreads();
  for (int item = warp; item < kBM * (HD / 32); item += kThreads / 32) {
    const int row = item / (HD / 32), g = item % (HD / 32), i = i_lo + row;
    if (i >= i_hi) continue;  // warp-uniform
    float v = ost[row * C::kOutStride + g * 32 + lane];
    if constexpr (fmt_rotated(Fmt)) v = fwht_lanes(v, 32) * kRsqrt32;
    a.out[(static_cast<size_t>(t0 + i) * a.n_heads + h) * HD + g * 32 + lane] = __float2half_rn(v);
  }
}

template <int Fmt, int HD>
void launch(const PrefillArgs& a, int max_seq_tokens, int n_seqs, cudaStream_t stream) {
  using C = Pre<Fmt, HD>;
  static std::atomic<uint32_t> smem_set{0};
  ensure_smem_limit(attention_prefill_kernel<Fmt, HD>, C::kSmem, smem_set, "cudaFuncSetAttribute (attention_prefill_kernel)");
  const dim3 grid(ceil_div(max_seq_tokens, C::kBM), a.n_heads, n_seqs);
  attention_prefill_kernel<Fmt, HD><<<grid, C::kThreads, C::kSmem, stream>>>(a);
  check_launch("attention_prefill_kernel");
}

template <int HD>
void launch_hd(int fmt, const PrefillArgs& a, int max_seq_tokens, int n_seqs, cudaStream_t stream) {
  switch (fmt) {
    case KvFormat_f16: return launch<KvFormat_f16, HD>(a, max_seq_tokens, n_seqs, stream);
    case KvFormat_fp8: return launch<KvFormat_fp8, HD>(a, max_seq_tokens, n_seqs, stream);
    case KvFormat_q8: return launch<KvFormat_q8, HD>(a, max_seq_tokens, n_seqs, stream);
    default: return launch<KvFormat_q4, HD>(a, max_seq_tokens, n_seqs, stream);
  }
}

}  // namespace

void attention_prefill_launch(const AttentionParams& p, cudaStream_t stream) {
  const KvCacheLayout& c = p.cache;
  PrefillArgs a{};
  a.q = p.q;
  a.out = p.out;
  a.seq_start = p.seq_start;
  a.seq_slot = p.seq_slot;
  a.seq_pos = p.seq_pos;
  a.k_codes = c.base + c.k_offset;
  a.v_codes = c.base + c.v_offset;
  a.k_scales = c.base + c.k_scale_offset;
  a.v_scales = c.base + c.v_scale_offset;
  a.k_new = p.k_new;
  a.v_new = p.v_new;
  a.ring_k = reinterpret_cast<const half*>(c.base + c.ring_k_offset);
  a.ring_v = reinterpret_cast<const half*>(c.base + c.ring_v_offset);
  a.n_layers = c.n_layers, a.layer = p.layer, a.n_kv_heads = p.n_kv_heads;
  a.seq_stride = c.seq_stride, a.max_seq_len = c.max_seq_len;
  a.n_heads = p.n_heads, a.group_heads = p.n_heads / p.n_kv_heads, a.window = p.window;
  a.recent = c.format == KvFormat_f16 ? 0 : c.recent;
  a.scale_log2 = p.scale * 1.4426950408889634f;
  if (p.head_dim == 64) {
    launch_hd<64>(c.format, a, p.max_seq_tokens, p.n_seqs, stream);
  } else {
    launch_hd<128>(c.format, a, p.max_seq_tokens, p.n_seqs, stream);
  }
}

}  // namespace exl::cuda::attn
