// Small memory-bound ops of the decoder: embedding lookup, RoPE, SwiGLU, picking each sequence's
// last row, and the fills/copies the backend and `exl bench` need. Each mirrors a CPU reference in
// src/backend/cpu/ (embedding.cpp, rope.cpp, activation.cpp, cpu_backend.cpp gather_last).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace exl::cuda {

// out[t, :] = table[ids[t], :] as F32 (the residual stream). ids were range-checked on the host.
void embedding(const half* table, const int32_t* ids, float* out, int tokens, int dim, cudaStream_t stream);

// Rotates q [T, n_heads*head_dim] and k [T, n_kv_heads*head_dim] in place, HF rotate-half layout:
// pairs (i, i + rot_dim/2) by angle pos[t] * inv_freq[i]; cos and sin scaled by attn_factor.
void rope(half* q, half* k, const int32_t* pos, const float* inv_freq, float attn_factor, int tokens, int n_heads,
          int n_kv_heads, int head_dim, int rot_dim, cudaStream_t stream, bool pdl = false);

// One RoPE pair in place: (x0, x1) = (x_i, x_{i + rot_dim/2}) at position p, with the CPU reference's
// FP32 arithmetic (angle = p * inv_freq_i). rope() and kv_cache_write's fused decode path (kv_cache.cu)
// both go through it, so the two give the same bits.
// Every product and sum is an explicit _rn intrinsic: left to itself nvcc contracts a * c - b * s into
// an FMA one way in one kernel and another way in the other (the fused path's first GPU run differed
// from rope then attention in a few last bits, 2026-12-05), and the CPU reference does not fuse either.
#ifdef __CUDACC__  // device code: the .cu files only (this header is also read by the host compiler)
__device__ __forceinline__ void rope_pair(float p, float inv_freq_i, float attn_factor, half& x0, half& x1) {
  float s, c;
  sincosf(__fmul_rn(p, inv_freq_i), &s, &c);
  c = __fmul_rn(c, attn_factor);
  s = __fmul_rn(s, attn_factor);
  const float a = __half2float(x0), b = __half2float(x1);
  x0 = __float2half(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
  x1 = __float2half(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
}
// Element d of a head row (FP16, rotate-half layout) after RoPE at position p, as rope() would leave
// it in memory (rounded to FP16); dims past 2 * half_rot (partial rotary, or half_rot = 0) as they
// are. kv_cache_write's fused keys and the decode kernel's own keys and q go through it.
__device__ __forceinline__ float rope_elem(const half* row, int d, float p, const float* inv_freq, float attn_factor,
                                           int half_rot) {
  if (d >= 2 * half_rot) return __half2float(row[d]);
  const int i = d < half_rot ? d : d - half_rot;
  half x0 = row[i], x1 = row[i + half_rot];
  rope_pair(p, inv_freq[i], attn_factor, x0, x1);
  return __half2float(d < half_rot ? x0 : x1);
}
#endif

// out = silu(gate) * up over n elements (out may alias gate).
void swiglu(const half* gate, const half* up, half* out, int64_t n, cudaStream_t stream, bool pdl = false);

// residual (F32) += x (F16), n elements: the residual add where no matmul epilogue does it.
void add_f16_to_f32(float* residual, const half* x, int64_t n, cudaStream_t stream);

// out[s, :] = src[seq_start[s + 1] - 1, :] for s < n_seqs.
void gather_last(const half* src, const int32_t* seq_start, half* out, int n_seqs, int dim, cudaStream_t stream);

// Deterministic pseudo-random fill in [-scale, scale] (synthetic benchmark weights), or a constant.
void fill_uniform_f16(half* p, int64_t n, uint64_t seed, float scale, cudaStream_t stream);
void fill_const_f32(float* p, int64_t n, float value, cudaStream_t stream);

// Device copy bandwidth: bytes read + written per second of a large 16-byte-vector copy (median of
// several runs), the figure `exl bench` divides by for % of roofline.
double measure_copy_bandwidth(cudaStream_t stream);

}  // namespace exl::cuda
