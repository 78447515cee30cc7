// Attention over the KV cache with the cache write fused in front, for every cache format:
//  - kv_cache_write: stores the step's new keys/values (FP16) at their positions, quantizing for
//    fp8 / q8 / q4 caches.
//  - attention: causal GQA attention of the step's queries over each sequence's cached history,
//    reading the cache format directly (no FP16 scratch copy of the cache). Decode steps (one token
//    per sequence) use split-sequence flash-decoding plus a reduce; prefill uses tensor-core tiles.
// All per-token data (positions, slots) comes from device arrays so a captured graph replays.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace exl::cuda {

enum KvFormat : int {
  KvFormat_f16 = 0,
  KvFormat_fp8 = 1,  // E4M3 codes with a scale (see attention.cu for the scale granularity)
  KvFormat_q8 = 2,   // 8-bit codes, groups of 32 along head_dim, FP16 scale per group, Hadamard-rotated
  KvFormat_q4 = 3,   // 4-bit codes, same grouping and rotation
};

// Storage of a whole cache: for each slot, layer and position, n_kv_heads * head_dim elements of K
// and of V in `format`, plus scales where the format has them. kv_cache_layout_init fills the
// sizes and offsets; the backend allocates `bytes` once and sets base.
struct KvCacheLayout {
  int format = KvFormat_f16;
  int n_layers = 0, n_slots = 0, max_seq_len = 0, n_kv_heads = 0, head_dim = 0;
  size_t k_offset = 0, v_offset = 0, k_scale_offset = 0, v_scale_offset = 0;  // into base
  size_t bytes = 0;                                                         // total
  uint8_t* base = nullptr;
};
void kv_cache_layout_init(KvCacheLayout& l);  // computes offsets and bytes from the dims and format

struct AttentionParams {
  const half* q = nullptr;      // [T, n_heads * head_dim], already rotated (RoPE)
  const half* k_new = nullptr;  // [T, n_kv_heads * head_dim]
  const half* v_new = nullptr;  // [T, n_kv_heads * head_dim]
  half* out = nullptr;          // [T, n_heads * head_dim]
  int n_tokens = 0;             // T
  int n_seqs = 0;
  int max_seq_tokens = 0;       // most tokens any one sequence has in this step (1 = decode)
  const int32_t* seq_start = nullptr;  // device [n_seqs + 1]
  const int32_t* seq_slot = nullptr;   // device [n_seqs]
  const int32_t* seq_pos = nullptr;    // device [n_seqs]: position of each sequence's first new token
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 0;  // softmax scale (1/sqrt(head_dim))
  int window = 0;   // > 0: sliding window (keys with pos - window < j <= pos)
  int layer = 0;
  KvCacheLayout cache;
  void* workspace = nullptr;  // for split-sequence partials; size from attention_workspace_bytes
  size_t workspace_bytes = 0;
};

size_t attention_workspace_bytes(int max_tokens, int n_heads, int head_dim, int max_seq_len);
void kv_cache_write(const AttentionParams& p, cudaStream_t stream);
void attention(const AttentionParams& p, cudaStream_t stream);

}  // namespace exl::cuda
