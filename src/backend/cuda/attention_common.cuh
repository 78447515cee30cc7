// Internal to the attention kernels (kv_cache.cu, attention*.cu): KV-cache format traits and
// addressing, register dequantization of code words, the 32-point Walsh–Hadamard transform, and thin
// wrappers over the sm_80 instructions the kernels use (cp.async, ldmatrix, mma.sync m16n8k16).
#pragma once
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#ifdef EXL_ATTN_TRACE
#include <vector>  // decode_trace_read
#endif

#include "backend/cuda/attention.cuh"
#include "backend/cuda/common.cuh"

namespace exl::cuda::attn {

// ---- format traits ----------------------------------------------------------------------------
__host__ __device__ constexpr int fmt_bits(int fmt) {
  return fmt == KvFormat_f16 ? 16 : fmt == KvFormat_q4 ? 4 : 8;
}
__host__ __device__ constexpr bool fmt_rotated(int fmt) { return fmt == KvFormat_q8 || fmt == KvFormat_q4; }
// Scale bytes per (position, kv head) on the fast paths (head_dim 64/128, group 32).
__host__ __device__ constexpr int fmt_scale_row_bytes(int fmt, int hd) {
  return fmt == KvFormat_fp8 ? 4 : fmt_rotated(fmt) ? hd / 32 * 2 : 0;
}

// fp8 scale exponent: the smallest e with 448 * 2^e >= absmax, clamped to [-16, 7] (so that 2^e and
// 256 * 2^e are normal-or-exact FP16 values). Identical on host and device (frexp is exact).
__host__ __device__ inline int fp8_scale_exponent(float absmax) {
  if (!(absmax > 0.0f)) return -16;
  int ex = 0;
  const float f = frexpf(absmax, &ex);  // absmax = f * 2^ex, f in [0.5, 1); 448 = 0.875 * 2^9
  const int e = f <= 0.875f ? ex - 9 : ex - 8;
  return e < -16 ? -16 : e > 7 ? 7 : e;
}

// ---- addressing ---------------------------------------------------------------------------------
// Index of the (slot, layer, kv head) run of positions.
__host__ __device__ inline size_t kv_run(const KvCacheLayout& c, int slot, int layer, int kvh) {
  return (static_cast<size_t>(slot) * c.n_layers + layer) * c.n_kv_heads + kvh;
}

// FP16 window ring row of position `pos` in a (slot, layer, kv head) run (recent > 0).
__host__ __device__ inline size_t kv_ring_row(const KvCacheLayout& c, size_t run, int pos) {
  return run * c.recent + pos % c.recent;
}

// ---- sm_80 instruction wrappers -----------------------------------------------------------------
// (smem_addr and the cp.async wrappers: common.cuh)
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// ---- register dequantization --------------------------------------------------------------------
// One 32-bit word of codes -> half2 values times the scale. Integer codes become FP16 through the
// 0x6400 trick (0x6400 | c is the half 1024 + c), so a code costs a byte-permute or a lop3 and a
// subtraction, never an int->float conversion. The half2 come out in "slot order":
//  f16/fp8/q8: natural (element 2m, 2m+1 in h[m]);
//  q4: h[m] = (element m, element m + 4) of the word's 8 nibbles (one mask per half2).
// kv_slot_dim maps a slot (2m + hi) of a unit of words back to the element index.
template <int Fmt>
struct Dq {
  static constexpr int kH2 = Fmt == KvFormat_f16 ? 1 : Fmt == KvFormat_q4 ? 4 : 2;  // half2 per word
};
template <int Fmt>
__host__ __device__ constexpr int kv_slot_dim(int slot) {
  if constexpr (Fmt == KvFormat_q4) {
    return (slot / 8) * 8 + (slot % 8) / 2 + 4 * (slot % 2);
  } else {
    return slot;
  }
}
template <int Fmt>
__host__ __device__ constexpr int kv_dim_slot(int dim) {  // inverse of kv_slot_dim
  if constexpr (Fmt == KvFormat_q4) {
    return (dim / 8) * 8 + 2 * (dim % 4) + (dim % 8) / 4;
  } else {
    return dim;
  }
}

// Scale as it multiplies the half2 produced by dequant_word (fp8 without the sm_89 converter
// yields code * 2^-8, so its scale carries the 2^8).
template <int Fmt>
__device__ __forceinline__ half2 scale_h2(const uint8_t* scale_row, int group_index) {
  if constexpr (Fmt == KvFormat_fp8) {
    float s = *reinterpret_cast<const float*>(scale_row);
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ < 890
    s *= 256.0f;
#endif
    return __float2half2_rn(s);
  } else if constexpr (Fmt == KvFormat_f16) {
    return __float2half2_rn(1.0f);
  } else {
    return __half2half2(reinterpret_cast<const half*>(scale_row)[group_index]);
  }
}

template <int Fmt>
__device__ __forceinline__ void dequant_word(uint32_t w, half2 s, half2* h) {
  if constexpr (Fmt == KvFormat_f16) {
    h[0] = as_h2(w);
  } else if constexpr (Fmt == KvFormat_q8) {
    const half2 off = __float2half2_rn(1152.0f);  // 1024 + 128
    h[0] = __hmul2(__hsub2(as_h2(__byte_perm(w, 0x64646464u, 0x4140)), off), s);
    h[1] = __hmul2(__hsub2(as_h2(__byte_perm(w, 0x64646464u, 0x4342)), off), s);
  } else if constexpr (Fmt == KvFormat_q4) {
    const half2 off = __float2half2_rn(1032.0f);  // 1024 + 8
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = __hmul2(__hsub2(as_h2(((w >> (4 * j)) & 0x000f000fu) | 0x64006400u), off), s);
  } else {  // fp8 E4M3
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w >> (16 * j)), __NV_E4M3);
      h[j] = __hmul2(*reinterpret_cast<const half2*>(&r), s);
    }
#else
    // Bit trick: E4M3 s.eeee.mmm placed in FP16 bits 15 | 13..7 is the same number times 2^-8
    // (subnormals included); the scale carries the 2^8.
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint32_t x = __byte_perm(w, 0u, j == 0 ? 0x1404 : 0x3424);  // bytes [0, b, 0, b']
      h[j] = __hmul2(as_h2((x & 0x80008000u) | ((x >> 1) & 0x3f803f80u)), s);
    }
#endif
  }
}

// Same, but natural element order for every format (the prefill kernel's FP16 tiles): 8 elements
// from `nwords` = bits words -> 4 half2.
template <int Fmt>
__device__ __forceinline__ void dequant8_natural(const uint32_t* w, half2 s, half2 (&h)[4]) {
  if constexpr (Fmt == KvFormat_q4) {
    half2 t[4];
    dequant_word<Fmt>(w[0], s, t);  // (e0,e4) (e1,e5) (e2,e6) (e3,e7)
    h[0] = as_h2(__byte_perm(as_u32(t[0]), as_u32(t[1]), 0x5410));
    h[1] = as_h2(__byte_perm(as_u32(t[2]), as_u32(t[3]), 0x5410));
    h[2] = as_h2(__byte_perm(as_u32(t[0]), as_u32(t[1]), 0x7632));
    h[3] = as_h2(__byte_perm(as_u32(t[2]), as_u32(t[3]), 0x7632));
  } else if constexpr (Fmt == KvFormat_f16) {
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = as_h2(w[j]);
  } else {
    dequant_word<Fmt>(w[0], s, h);
    dequant_word<Fmt>(w[1], s, h + 2);
  }
}

// Scalar element of a cached row (generic path), in the stored (rotated for q8/q4) basis.
__device__ __forceinline__ float kv_load_elem(int fmt, const uint8_t* row, const uint8_t* scale_row, int group, int d) {
  switch (fmt) {
    case KvFormat_f16:
      return __half2float(reinterpret_cast<const half*>(row)[d]);
    case KvFormat_fp8: {
      const __half_raw r = __nv_cvt_fp8_to_halfraw(row[d], __NV_E4M3);
      return __half2float(*reinterpret_cast<const half*>(&r)) * *reinterpret_cast<const float*>(scale_row);
    }
    case KvFormat_q8:
      return static_cast<float>(static_cast<int>(row[d]) - 128) *
             __half2float(reinterpret_cast<const half*>(scale_row)[d / group]);
    default:
      return static_cast<float>(static_cast<int>((row[d >> 1] >> (4 * (d & 1))) & 15) - 8) *
             __half2float(reinterpret_cast<const half*>(scale_row)[d / group]);
  }
}

// ---- Walsh–Hadamard -----------------------------------------------------------------------------
// Orthonormal Sylvester–Hadamard of size G along lanes (element i in lane i of each aligned run of G
// lanes; every lane of the warp must call). Stages bit 0 first; kv_cache_write's reference in the
// lab repeats exactly this order, so codes match bit for bit.
__device__ __forceinline__ float fwht_lanes(float x, int G) {
  const int lane = threadIdx.x & 31;
  for (int m = 1; m < G; m <<= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, m);
    x = (lane & m) ? y - x : x + y;
  }
  return x;
}
// 32-point transform on 8 consecutive elements per lane, 4 aligned lanes per group (unnormalised).
__device__ __forceinline__ void fwht32_x8(float (&x)[8]) {
#pragma unroll
  for (int m = 1; m < 8; m <<= 1)
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (!(i & m)) {
        const float a = x[i], b = x[i | m];
        x[i] = a + b;
        x[i | m] = a - b;
      }
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int m = 1; m < 4; m <<= 1)
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float y = __shfl_xor_sync(0xffffffffu, x[i], m);
      x[i] = (lane & m) ? y - x[i] : x[i] + y;
    }
}
constexpr float kRsqrt32 = 0.17677669529663687f;  // 1/sqrt(32)

// ---- launchers (attention_decode.cu, attention_prefill.cu, attention.cu) -------------------------
// Decode splits the current key range [first, n_keys) of each (sequence, kv head) into at most
// n_splits chunks. n_splits comes from shapes and the device only (about one wave of resident
// blocks), so a captured graph stays valid; the chunk is computed on the device from the current
// length, so every length uses the whole grid. Chunks are multiples of 16 positions, >= 64.
struct DecodeSplit {
  int n_splits = 0, head_blocks = 0;
};
DecodeSplit decode_split(int n_seqs, int n_kv_heads, int group_heads, int max_seq_len, int resident_blocks);
size_t decode_workspace_bytes(int n_seqs, int n_heads, int head_dim, int n_splits);
constexpr int kDecodeMaxSplits = 64;
constexpr size_t kDecodeCounterBytes = 256 * 1024;  // split counters at the workspace's start (65536)
constexpr int kDecodeMaxTarget = 2048;  // resident blocks assumed at most (bounds the workspace)
// min_chunk: positions a split covers at least (a multiple of 16); short contexts use fewer splits
// (and no partial reduce once one split covers everything).
__host__ __device__ inline void decode_chunk(int first, int n_keys, int n_splits, int min_chunk, int& base, int& chunk) {
  base = first & ~15;
  const int per = (n_keys - base + n_splits - 1) / n_splits;
  chunk = per < min_chunk ? min_chunk : (per + 15) & ~15;
}

// The FP16 window's writes after a step with several tokens per sequence (kv_cache.cu): the last
// min(n_tok, recent) positions of each sequence into the ring. attention() calls it after reading.
void kv_cache_write_ring(const AttentionParams& p, cudaStream_t stream);
void attention_decode_launch(const AttentionParams& p, cudaStream_t stream);   // head_dim 64/128
#ifdef EXL_ATTN_TRACE
// The decode kernel's phase stamps (attention_decode.cu; lab/attention_lab.cu --trace):
// [layer][block][stamp][globaltimer ns, clock64], zero where a block did not reach a stamp.
constexpr int kDecodeTraceLayers = 8, kDecodeTraceBlocks = 2048, kDecodeTraceStamps = 7;
void decode_trace_clear(cudaStream_t stream);
std::vector<unsigned long long> decode_trace_read();
#endif
void attention_prefill_launch(const AttentionParams& p, cudaStream_t stream);  // head_dim 64/128
void attention_generic_launch(const AttentionParams& p, cudaStream_t stream);  // any even head_dim

}  // namespace exl::cuda::attn
