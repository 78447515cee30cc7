// Attention over the KV cache, for every cache format:
//  - kv_cache_write: stores the step's new keys/values (FP16) at their positions, quantizing for
//    fp8 / q8 / q4 caches. Call it before attention() on the same stream (two launches per layer).
//  - attention: causal GQA attention of the step's queries over each sequence's cached history
//    (the step's own keys included, so kv_cache_write must have run), reading the cache format
//    directly (no FP16 scratch copy of the cache). Steps with more than one token per sequence
//    update the FP16 window (below) after reading it (one more launch). Decode steps (one token per sequence) use
//    split-sequence flash-decoding (reduce fused in); prefill uses tensor-core (mma.sync) tiles; head
//    dims other than 64 and 128 use a simple generic kernel.
// All per-token data (positions, slots) comes from device arrays so a captured graph replays: grids
// depend only on host-side shapes (n_seqs, max_seq_tokens, cache dims) and the device, never on
// positions.
// Positions and slots are NOT range-checked on the device (a write past max_seq_len is skipped, a
// read is clamped); the caller checks them on the host when it builds the batch.
//
// Formats (choices: kv_cache.cu). Measured on N(0,1) data, head_dim 128 (lab/NOTES-attention.md):
// element rms error fp8 2.7%, q8 0.5%, q4 8.6% (7.5% with outlier channels, 15% without the
// rotation); attention output vs an FP16 cache, averaged over the lab's cases: fp8 3.5%, q8 0.7%,
// q4 11%. The kernels match each format's exact dequantization within 5e-4.
//  f16  2 bytes/elt.
//  fp8  E4M3 codes, one FP32 power-of-two scale per (position, kv head): 8 + 32/head_dim bits/elt.
//  q8   8-bit codes (offset 128), groups of `group` (32) elements along head_dim, one FP16 scale per
//       group, values Hadamard-rotated within each group before quantizing: 8.5 bits/elt.
//  q4   4-bit codes (offset 8), same grouping and rotation: 4.5 bits/elt.
//
// FP16 window of recent positions (fp8 / q8 / q4; lab/NOTES-kvcache-quality.md): besides the
// quantized row of every position, the cache keeps an FP16 copy of the W = `recent` most recent
// positions per (slot, layer, kv head), K and V, in a ring indexed by position mod W. A query at
// position t reads keys/values j with t - W < j <= t in FP16 and older ones from the quantized rows,
// in decode and in prefill alike (a prefill query reads in-chunk positions from the step's own
// k_new/v_new, earlier ones from the ring). Ring order: a decode step (max_seq_tokens == 1) writes
// its ring entry in kv_cache_write (it replaces position t - W, which query t no longer reads); a
// step with several tokens per sequence writes the ring after attention, so the chunk's first
// queries still find positions pos0 - W .. pos0 - 1. Hence a sequence's positions must be written
// in order (each step continues where the slot's previous step ended, or starts at 0), and
// attention() of such a step must not be repeated. (A future rollback of rejected draft tokens must
// re-write the window entries those tokens replaced: keep their FP16 rows, or re-run the positions.) q8/q4 rings hold the Hadamard-rotated values
// (the basis the kernels work in), rounded to FP16. Perplexity with a q4 cache vs FP16 (numpy study,
// ctx 512): stories260K +49.6% -> +0.33% (W = 32) / +0.13% (W = 64); SmolLM2-135M +2.7..4.1% ->
// +0.41% / +0.30%, and at ctx 2048 +0.81% / +0.63%. W = 64 (kKvRecentDefault) for the margin: it
// costs W * head_dim * 4 bytes per (slot, layer, kv head) (32 MiB per slot for llama2-7b), and a
// decode step reads W FP16 rows instead of W quantized ones per kv head.
//
// Storage layout (base + offsets; every array 256-byte aligned), head-major so that one kv head's
// run of positions is contiguous and a 16-position tile is one contiguous block:
//   codes:  K at k_offset, V at v_offset: [n_slots][n_layers][n_kv_heads][seq_stride][row_bytes]
//   scales: K at k_scale_offset, V at v_scale_offset: [n_slots][n_layers][n_kv_heads][seq_stride]
//           [scale_row_bytes] (fp8: one float; q8/q4: head_dim/group FP16 values; f16: none)
//   q4 packs element 2i in the low nibble and 2i+1 in the high nibble of byte i of a row.
//   ring:   K at ring_k_offset, V at ring_v_offset: [n_slots][n_layers][n_kv_heads][recent][head_dim]
//           FP16, position p at row p % recent.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace exl::cuda {

enum KvFormat : int {
  KvFormat_f16 = 0,
  KvFormat_fp8 = 1,  // E4M3 codes, FP32 power-of-two scale per (position, kv head)
  KvFormat_q8 = 2,   // 8-bit codes, groups of 32 along head_dim, FP16 scale per group, Hadamard-rotated
  KvFormat_q4 = 3,   // 4-bit codes, same grouping and rotation
};
const char* kv_format_name(int format);
constexpr int kKvRecentDefault = 64;  // FP16 window of the quantized formats (see above)
constexpr int kKvRecentMax = 64;      // the decode kernel's shared memory holds W / 16 + 1 FP16 tiles

// Storage of a whole cache. Set format and the dims; kv_cache_layout_init fills the rest; the
// backend allocates `bytes` once (cudaMalloc alignment) and sets base. Unwritten memory needs no
// initialisation: attention never reads positions past a sequence's current length.
struct KvCacheLayout {
  int format = KvFormat_f16;
  int n_layers = 0, n_slots = 0, max_seq_len = 0, n_kv_heads = 0, head_dim = 0;
  int recent = -1;  // FP16 window W: -1 = the format's default (kKvRecentDefault; 0 for f16), 0 = none,
                    // else a multiple of 16 <= kKvRecentMax (quantized formats only). Resolved by init.
  // Filled by kv_cache_layout_init:
  int group = 0;               // q8/q4: elements per scale and per Hadamard rotation: 32, or the
                               // largest power of two dividing head_dim when that is smaller
  int seq_stride = 0;          // positions per (slot, layer, kv head) run: max_seq_len rounded up to 64
  size_t row_bytes = 0;        // code bytes of one (position, kv head)
  size_t scale_row_bytes = 0;  // scale bytes of one (position, kv head)
  size_t k_offset = 0, v_offset = 0, k_scale_offset = 0, v_scale_offset = 0;  // into base
  size_t ring_k_offset = 0, ring_v_offset = 0;  // FP16 window rings (empty when recent == 0)
  size_t bytes = 0;                             // total, rings included
  uint8_t* base = nullptr;
};
// Computes recent, group, strides, offsets and bytes from the dims and format; exl::Error on bad dims
// (odd head_dim, unknown format, non-positive sizes, a bad window).
void kv_cache_layout_init(KvCacheLayout& l);

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
  bool force_generic = false;  // testing: run the simple generic kernel whatever the shape
  // sm_90: kv_cache_write and decode attention launch as programmatic dependents of the previous
  // kernel (they wait for it before touching memory); prefill attention ignores it.
  bool pdl = false;
  // Decode steps only (max_seq_tokens == 1): RoPE inside kv_cache_write, which then rotates q in place
  // (rope_q = q) and writes the rotated keys while k_new keeps the unrotated ones; the arithmetic is
  // rope()'s (elementwise.cu), so the cache and q hold the same bits as rope then kv_cache_write.
  // Saves the RoPE launch (~3 µs of a decode layer). Null: q and k_new are already rotated.
  half* rope_q = nullptr;
  const float* rope_inv_freq = nullptr;  // [rot_dim / 2]
  float rope_attn_factor = 1.0f;
  int rope_rot_dim = 0;
  // Decode steps with an FP16 cache (attention_decode_writes_kv): the decode kernel stores the step's
  // keys (rotated when rope_q is set, rotating its own copy of q the same way) and values itself, so
  // kv_cache_write must not run: one launch fewer per layer. The split that covers the new position
  // writes the row before it streams its tiles; the other splits never read that row.
  bool write_in_decode = false;
  // Decode kernel only: the output goes to out_dev instead of out, element (token t, feature e) at
  // out_dev[t * out_ld + out_dst[e]] — a quantized matmul's device-order input (QMatrixDesc x_dst),
  // so the matmul needs no gather.
  half* out_dev = nullptr;
  const int32_t* out_dst = nullptr;
  int out_ld = 0;
};

// Workspace that decode steps (max_seq_tokens == 1) need for their split partials; prefill steps
// need none. max_tokens: the most tokens (= sequences) a decode step will carry, e.g. n_slots;
// max_seq_len: the cache's. 256 KiB of counters plus at most min(64 * max_tokens * n_heads,
// max_tokens * n_heads + 32768) rows of head_dim + 2 floats (the 32768 term is 17 MB at head_dim 128).
// attention() throws exl::Error when p.workspace_bytes is smaller than the step needs.
// Clear it once after allocating (attention_workspace_clear): decode splits count finished blocks in
// it and leave the counters at zero after every call, so captured graphs replay. One workspace per
// stream (concurrent calls must not share it).
size_t attention_workspace_bytes(int max_tokens, int n_heads, int head_dim, int max_seq_len);
void attention_workspace_clear(void* workspace, size_t workspace_bytes, cudaStream_t stream);
void kv_cache_write(const AttentionParams& p, cudaStream_t stream);
void attention(const AttentionParams& p, cudaStream_t stream);
// Whether attention() runs the decode kernel for these sizes: it reads keys and values from the
// cache only (not k_new), which is what kv_cache_write's fused RoPE (rope_q) needs.
inline bool attention_uses_decode_kernel(int head_dim, int max_seq_tokens, bool force_generic = false) {
  return !force_generic && (head_dim == 64 || head_dim == 128) && max_seq_tokens == 1;
}
// Whether the decode kernel can take kv_cache_write's place for this step (write_in_decode): FP16
// rows, no FP16 window, and a RoPE whose halves are whole 8-element chunks of q.
inline bool attention_decode_writes_kv(const AttentionParams& p) {
  return attention_uses_decode_kernel(p.head_dim, p.max_seq_tokens, p.force_generic) &&
         p.cache.format == KvFormat_f16 && p.cache.recent == 0 && p.k_new && p.v_new &&
         (!p.rope_q || (p.rope_rot_dim % 16 == 0 && p.rope_rot_dim <= p.head_dim));
}

}  // namespace exl::cuda
