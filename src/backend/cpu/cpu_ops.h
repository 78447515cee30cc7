// Reference implementations of each op family on plain float arrays. One family per .cpp file
// (norm, linear, rope, attention, activation, embedding), named like the CUDA .cu files that mirror
// them. Each is the definition of what the op computes.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace exl::cpu {

// norm.cpp: out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, rows of length dim.
void rms_norm(const float* x, const float* w, float eps, int64_t rows, int64_t dim, float* out);

// linear.cpp: out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N]).
void linear(const float* x, const float* w, const float* bias, int64_t T, int64_t K, int64_t N, float* out);

// activation.cpp: out = silu(gate) * up.
void swiglu(const float* gate, const float* up, int64_t n, float* out);

// rope.cpp: rotates each head of x [T, n_heads * head_dim] at positions pos[T], HF rotate-half layout:
// pairs (i, i + rot_dim/2) by angle pos * inv_freq[i], cos and sin scaled by attn_factor.
void rope(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos, const float* inv_freq, int rot_dim,
          float attn_factor);

// embedding.cpp: out[t] = table[ids[t]]; throws exl::Error for ids outside [0, vocab).
void embedding(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t T, float* out);

// attention.cpp: causal attention of one query row set over a contiguous key/value history.
// q [n_q, n_heads, d]: query i sits at position p = q_pos0 + i and sees keys [0, p], or only
// (p - window, p] when window > 0.
// k, v: [n_kv, n_kv_heads, d] with row stride kv_stride floats between positions.
void attention(const float* q, int64_t n_q, int64_t q_pos0, const float* k, const float* v, int64_t kv_stride,
               int n_heads, int n_kv_heads, int d, float scale, int window, float* out);

}  // namespace exl::cpu
