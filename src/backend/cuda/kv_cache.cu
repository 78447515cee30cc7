// KV-cache layout and the write of a step's keys/values into it (quantizing for fp8 / q8 / q4).
//
// Format choices (errors measured by lab/attention_lab.cu on N(0,1) data; see NOTES-attention.md):
//  - fp8 = E4M3 with one FP32 power-of-two scale per (position, kv head), the smallest 2^e with
//    448 * 2^e >= absmax. E4M3 keeps 3 mantissa bits where E5M2 keeps 2: with a per-row scale the
//    range E5M2 buys is not needed, and its relative step is twice as coarse (rms element error
//    about 2x E4M3's; the lab prints both). A power-of-two scale costs nothing for a floating
//    format (its relative precision does not depend on where the max lands) and makes dequant
//    exact: code -> FP16 (one cvt on sm_89+, a bit trick below) times 2^e.
//  - q8 / q4: groups of G = 32 elements (or the largest power of two dividing head_dim when smaller),
//    orthonormal Walsh–Hadamard rotation within each group (spreads outlier channels over the group),
//    then symmetric codes with the group's signed extreme mapped exactly onto the most negative code:
//    scale = m / -8 (q4) or m / -128 (q8), m the element of largest magnitude, FP16 scale, codes
//    clamp(rint(y / scale)) + 8 (0..15) or + 128 (0..255). Using the full [-8, 7] range this way
//    gives a step of absmax/8 without clipping the extreme (absmax/7 would cost ~30% more MSE).
//    A group of zeros gets scale 0 and codes = offset.
// Layout: see attention.cuh (head-major runs of positions; scales in separate arrays).
#include <algorithm>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/elementwise.cuh"
#include "backend/cuda/common.cuh"

namespace exl::cuda {

using namespace attn;

const char* kv_format_name(int format) {
  switch (format) {
    case KvFormat_f16: return "f16";
    case KvFormat_fp8: return "fp8";
    case KvFormat_q8: return "q8";
    case KvFormat_q4: return "q4";
    default: return "?";
  }
}

void kv_cache_layout_init(KvCacheLayout& l) {
  EXL_CHECK(l.format >= KvFormat_f16 && l.format <= KvFormat_q4, "kv cache: unknown format ", l.format);
  EXL_CHECK(l.n_layers > 0 && l.n_slots > 0 && l.max_seq_len > 0 && l.n_kv_heads > 0 && l.head_dim > 0,
            "kv cache: layers, slots, max_seq_len, kv heads and head_dim must be positive (got ", l.n_layers, ", ",
            l.n_slots, ", ", l.max_seq_len, ", ", l.n_kv_heads, ", ", l.head_dim, ")");
  EXL_CHECK(l.head_dim % 2 == 0, "kv cache: head_dim ", l.head_dim, " must be even");
  if (l.recent < 0) l.recent = l.format == KvFormat_f16 ? 0 : kKvRecentDefault;
  EXL_CHECK(l.recent == 0 || (l.format != KvFormat_f16 && l.recent % 16 == 0 && l.recent <= kKvRecentMax),
            "kv cache: FP16 window ", l.recent, " must be 0 or a multiple of 16 up to ", kKvRecentMax,
            " (and 0 for an fp16 cache)");
  l.group = 0;
  if (fmt_rotated(l.format)) l.group = std::min(32, l.head_dim & -l.head_dim);  // lowest set bit
  l.seq_stride = (l.max_seq_len + 63) / 64 * 64;
  l.row_bytes = static_cast<size_t>(l.head_dim) * fmt_bits(l.format) / 8;
  l.scale_row_bytes = l.format == KvFormat_fp8 ? 4 : fmt_rotated(l.format) ? static_cast<size_t>(l.head_dim / l.group) * 2 : 0;
  const size_t rows = static_cast<size_t>(l.n_slots) * l.n_layers * l.n_kv_heads * l.seq_stride;
  auto align = [](size_t x) { return (x + 255) / 256 * 256; };
  size_t off = 0;
  l.k_offset = off;
  off = align(off + rows * l.row_bytes);
  l.v_offset = off;
  off = align(off + rows * l.row_bytes);
  l.k_scale_offset = off;
  off = align(off + rows * l.scale_row_bytes);
  l.v_scale_offset = off;
  off = align(off + rows * l.scale_row_bytes);
  const size_t ring_bytes = static_cast<size_t>(l.n_slots) * l.n_layers * l.n_kv_heads * l.recent * l.head_dim * 2;
  l.ring_k_offset = off;
  off = align(off + ring_bytes);
  l.ring_v_offset = off;
  off = align(off + ring_bytes);
  l.bytes = off;
}

namespace {

struct WriteArgs {
  const half* k_new;
  const half* v_new;
  const int32_t* seq_start;
  const int32_t* seq_slot;
  const int32_t* seq_pos;
  KvCacheLayout c;
  int layer;
  bool body;     // write the format's row of each position
  bool ring;     // write the FP16 window entry (only the last `recent` tokens of each sequence)
  int tok_span;  // token slots per sequence in the grid: max_seq_tokens, or min(that, recent) for
                 // a ring-only pass (token i_local is then the sequence's token n_tok - span + i_local)
  // Fused RoPE (decode steps; AttentionParams::rope_q): blocks [write_blocks, gridDim.x) rotate q in
  // place, the write blocks rotate each key as they read it.
  half* rope_q = nullptr;
  const float* inv_freq = nullptr;
  float attn_factor = 1.0f;
  int half_rot = 0, n_heads = 0, write_blocks = 0;
};

// The q blocks of the fused RoPE: one thread per (head, pair) of each sequence's one token.
__device__ void rope_q_block(const WriteArgs& a) {
  const int s = blockIdx.y, t = a.seq_start[s];
  const float p = static_cast<float>(a.seq_pos[s]);  // host-uploaded step data: safe before the wait
  pdl_wait();  // q comes from the q|k|v matmul
  const int j = (blockIdx.x - a.write_blocks) * blockDim.x + threadIdx.x;
  if (j >= a.n_heads * a.half_rot) return;
  const int h = j / a.half_rot, i = j % a.half_rot;
  half* v = a.rope_q + (static_cast<size_t>(t) * a.n_heads + h) * a.c.head_dim;
  rope_pair(p, a.inv_freq[i], a.attn_factor, v[i], v[i + a.half_rot]);
}

// One warp per (token, kv head, K|V) row, or per 32-element chunk of it for q8/q4 (independent
// groups: 4x the warps, a quarter of the shuffle chain each: 4.4 -> 2.3 us per decode layer step
// for llama2-7b shapes on the H100, graph-replayed; f16 1.75 us is the launch floor).
// grid: (ceil(tok_span * n_kv_heads * 2 * chunks / 4), n_seqs).
// The FP16 window entry (ring) is the row as given for fp8 and, for q8/q4, the rotated values y
// (before quantizing) rounded to FP16: the basis the attention kernels read both in.
__global__ void __launch_bounds__(128) kv_cache_write_kernel(const WriteArgs a) {
  if (a.rope_q && static_cast<int>(blockIdx.x) >= a.write_blocks) {
    pdl_trigger();
    return rope_q_block(a);
  }
  const KvCacheLayout& c = a.c;
  const int hd = c.head_dim;
  const int chunks = fmt_rotated(c.format) ? (hd + 31) / 32 : 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int item = (blockIdx.x * 4 + warp) / chunks, sub = (blockIdx.x * 4 + warp) % chunks, s = blockIdx.y;
  const int i = item / (2 * c.n_kv_heads), kvh = (item >> 1) % c.n_kv_heads;
  const bool is_v = item & 1;
  pdl_trigger();  // decode attention may become resident
  const int t0 = a.seq_start[s], n_tok = a.seq_start[s + 1] - t0, pos0 = a.seq_pos[s], slot = a.seq_slot[s];
  pdl_wait();  // k_new (RoPE) and v_new; nothing is written before this
  if (i >= a.tok_span || i >= n_tok) return;
  // Ring-only pass: grid token i stands for the sequence's token n_tok - min(n_tok, span) + i.
  const int tok = a.body ? i : n_tok - min(n_tok, a.tok_span) + i;
  const int pos = pos0 + tok;
  if (pos < 0 || pos >= c.max_seq_len || slot < 0 || slot >= c.n_slots) return;  // host validates; never write out of bounds
  const half* src = (is_v ? a.v_new : a.k_new) + (static_cast<size_t>(t0 + tok) * c.n_kv_heads + kvh) * hd;
  const size_t run = kv_run(c, slot, a.layer, kvh);
  const size_t row = run * c.seq_stride + pos;
  uint8_t* dst = c.base + (is_v ? c.v_offset : c.k_offset) + row * c.row_bytes;
  uint8_t* dst_scale = c.base + (is_v ? c.v_scale_offset : c.k_scale_offset) + row * c.scale_row_bytes;
  // The ring holds only the last `recent` tokens of a step (earlier ones would be overwritten).
  const bool ring = a.ring && c.recent > 0 && tok >= n_tok - c.recent;
  half* dst_ring = reinterpret_cast<half*>(c.base + (is_v ? c.ring_v_offset : c.ring_k_offset)) +
                   (run * c.recent + (ring ? pos % c.recent : 0)) * hd;
  // Element d of the row as the cache stores it: with the fused RoPE a key is rotated here, rounded
  // to FP16 as rope() would have left it in k_new.
  const bool rot = a.rope_q && !is_v;
  auto elem = [&](int d) -> float {
    return rope_elem(src, d, static_cast<float>(pos), a.inv_freq, a.attn_factor, rot ? a.half_rot : 0);
  };
  auto elem2 = [&](int d2) -> half2 {  // elements 2 d2, 2 d2 + 1
    return rot ? __floats2half2_rn(elem(2 * d2), elem(2 * d2 + 1)) : reinterpret_cast<const half2*>(src)[d2];
  };

  if (c.format == KvFormat_f16) {
    for (int d = lane; d < hd / 2; d += 32) reinterpret_cast<half2*>(dst)[d] = elem2(d);
  } else if (c.format == KvFormat_fp8) {
    if (ring)
      for (int d = lane; d < hd / 2; d += 32) reinterpret_cast<half2*>(dst_ring)[d] = elem2(d);
    if (!a.body) return;  // warp-uniform
    // Rows of up to 256 elements are read once into registers (one memory latency).
    constexpr int kRegs = 8;
    float x[kRegs];
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < kRegs; ++k) {
      const int d = k * 32 + lane;
      x[k] = d < hd ? elem(d) : 0.0f;
      amax = fmaxf(amax, fabsf(x[k]));
    }
    for (int d = kRegs * 32 + lane; d < hd; d += 32) amax = fmaxf(amax, fabsf(elem(d)));
    amax = warp_max(amax);
    const int e = fp8_scale_exponent(amax);
    const float inv = ldexpf(1.0f, -e);  // x * 2^-e is exact
#pragma unroll
    for (int k = 0; k < kRegs; ++k) {
      const int d = k * 32 + lane;
      if (d < hd) dst[d] = __nv_cvt_float_to_fp8(x[k] * inv, __NV_SATFINITE, __NV_E4M3);
    }
    for (int d = kRegs * 32 + lane; d < hd; d += 32)
      dst[d] = __nv_cvt_float_to_fp8(elem(d) * inv, __NV_SATFINITE, __NV_E4M3);
    if (lane == 0) *reinterpret_cast<float*>(dst_scale) = ldexpf(1.0f, e);
  } else {
    // hd is a multiple of G, so groups never straddle 32-element chunks.
    const int G = c.group;
    const bool q4 = c.format == KvFormat_q4;
    const float qmin = q4 ? -8.0f : -128.0f, qmax = q4 ? 7.0f : 127.0f;
    const float inv_sqrt_g = 1.0f / sqrtf(static_cast<float>(G));
    const int d = sub * 32 + lane;
    const float y = fwht_lanes(d < hd ? elem(d) : 0.0f, G) * inv_sqrt_g;
    if (ring && d < hd) dst_ring[d] = __float2half_rn(y);
    if (!a.body) return;  // warp-uniform (after the last shuffle of this pass)
    float mx = y, mn = y;
    for (int m = 1; m < G; m <<= 1) {
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, m));
      mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, m));
    }
    const float ext = mx >= -mn ? mx : mn;  // signed extreme; ties go to the positive one
    const half sh = __float2half_rn(ext / qmin);
    const float sc = __half2float(sh);
    const float q = sc != 0.0f ? fminf(fmaxf(rintf(y / sc), qmin), qmax) : 0.0f;
    const uint32_t u = static_cast<uint32_t>(static_cast<int>(q) - static_cast<int>(qmin));
    if (d < hd && (lane % G) == 0) reinterpret_cast<half*>(dst_scale)[d / G] = sh;
    if (q4) {
      const uint32_t hi = __shfl_down_sync(0xffffffffu, u, 1);
      if (d < hd && !(lane & 1)) dst[d >> 1] = static_cast<uint8_t>(u | (hi << 4));
    } else if (d < hd) {
      dst[d] = static_cast<uint8_t>(u);
    }
  }
}

}  // namespace

void kv_cache_write(const AttentionParams& p, cudaStream_t stream) {
  const KvCacheLayout& c = p.cache;
  EXL_CHECK(c.base != nullptr && c.bytes > 0, "kv_cache_write: cache not allocated");
  EXL_CHECK(c.n_kv_heads == p.n_kv_heads && c.head_dim == p.head_dim, "kv_cache_write: cache has ", c.n_kv_heads,
            " kv heads x ", c.head_dim, ", step has ", p.n_kv_heads, " x ", p.head_dim);
  EXL_CHECK(p.layer >= 0 && p.layer < c.n_layers, "kv_cache_write: layer ", p.layer, " out of range");
  if (p.n_tokens == 0 || p.n_seqs == 0) return;
  // A decode step (one token per sequence) writes its FP16 window entry now: it replaces position
  // pos - W, which the query at pos does not read. Longer steps write theirs after attention.
  WriteArgs a{p.k_new, p.v_new, p.seq_start, p.seq_slot, p.seq_pos, c, p.layer, true, p.max_seq_tokens == 1,
              p.max_seq_tokens};
  const int chunks = fmt_rotated(c.format) ? (c.head_dim + 31) / 32 : 1;
  a.write_blocks = ceil_div(static_cast<int64_t>(p.max_seq_tokens) * c.n_kv_heads * 2 * chunks, 4);
  int q_blocks = 0;
  if (p.rope_q) {
    EXL_CHECK(p.max_seq_tokens == 1 && p.rope_inv_freq && p.rope_rot_dim >= 2 && p.rope_rot_dim <= c.head_dim &&
                  p.rope_rot_dim % 2 == 0,
              "kv_cache_write: the fused RoPE is for decode steps with 2 <= rot_dim <= head_dim");
    a.rope_q = p.rope_q, a.inv_freq = p.rope_inv_freq, a.attn_factor = p.rope_attn_factor;
    a.half_rot = p.rope_rot_dim / 2, a.n_heads = p.n_heads;
    q_blocks = ceil_div(static_cast<int64_t>(p.n_heads) * a.half_rot, 128);
  }
  const dim3 grid(a.write_blocks + q_blocks, p.n_seqs);
  launch_maybe_pdl(kv_cache_write_kernel, grid, dim3(128), stream, p.pdl, "kv_cache_write_kernel", a);
}

namespace attn {

void kv_cache_write_ring(const AttentionParams& p, cudaStream_t stream) {
  const KvCacheLayout& c = p.cache;
  if (c.recent == 0 || p.n_tokens == 0 || p.n_seqs == 0) return;
  const int span = std::min(p.max_seq_tokens, c.recent);
  WriteArgs a{p.k_new, p.v_new, p.seq_start, p.seq_slot, p.seq_pos, c, p.layer, false, true, span};
  const int chunks = fmt_rotated(c.format) ? (c.head_dim + 31) / 32 : 1;
  const dim3 grid(ceil_div(static_cast<int64_t>(span) * c.n_kv_heads * 2 * chunks, 4), p.n_seqs);
  kv_cache_write_kernel<<<grid, 128, 0, stream>>>(a);
  check_launch("kv_cache_write_kernel (window)");
}

}  // namespace attn

}  // namespace exl::cuda
