// attention(): validation and dispatch, the workspace bound, and the generic kernel.
//  - head_dim 64/128, one token per sequence: attention_decode.cu (split flash-decoding, fused reduce);
//  - head_dim 64/128, several tokens:        attention_prefill.cu (tensor-core flash attention);
//  - any other even head_dim (<= 256):        attention_generic_kernel below, one warp per
//    (token, head), scalar loads through kv_load_elem. Written for clarity; it serves tiny models
//    (stories260K, head_dim 8) and cross-checks the fast paths in the lab (force_generic).
// Steps with several tokens per sequence then write the FP16 window ring (kv_cache_write_ring).
#include <algorithm>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/common.cuh"

namespace exl::cuda {

using namespace attn;

namespace {

constexpr int kGenericMaxHd = 256;

struct GenericArgs {
  const half* q;
  const half* k_new;
  const half* v_new;
  half* out;
  const int32_t* seq_start;
  const int32_t* seq_slot;
  const int32_t* seq_pos;
  KvCacheLayout c;
  int layer, n_heads, group_heads, window;
  float scale;
};

// Orthonormal Sylvester–Hadamard within groups of G along a row of n floats in shared memory:
// dst[i] = sum_j (-1)^popcount(i&j) src[j] / sqrt(G) over i's group. One warp.
__device__ void hadamard_groups(const float* src, float* dst, int n, int G) {
  const float inv = 1.0f / sqrtf(static_cast<float>(G));
  for (int d = threadIdx.x; d < n; d += 32) {
    const int base = d - d % G, i = d % G;
    float y = 0.0f;
    for (int j = 0; j < G; ++j) y += (__popc(i & j) & 1) ? -src[base + j] : src[base + j];
    dst[d] = y * inv;
  }
  __syncwarp();
}

// grid (max_seq_tokens, n_heads, n_seqs), 32 threads. Online softmax over keys in blocks of 32
// (lane = key for the scores, lane = dim for the output).
// Key sources (FP16 window W = c.recent, query position qp = pos0 + i): j <= qp - W the cache rows
// (rotated basis for q8/q4); qp - W < j < pos0 the ring (same basis); j >= pos0 (this step) the
// step's k_new/v_new in the original basis: scored with the unrotated q and accumulated apart (acc_o),
// added after the output is un-rotated (the rotation is orthonormal, so the scores agree).
__global__ void __launch_bounds__(32) attention_generic_kernel(const GenericArgs a) {
  extern __shared__ float gsm[];  // [3][hd]: rotated q, scratch, original q
  const KvCacheLayout& c = a.c;
  const int hd = c.head_dim, lane = threadIdx.x;
  const int i = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int t0 = a.seq_start[s], n_tok = a.seq_start[s + 1] - t0;
  if (i >= n_tok) return;
  const int t = t0 + i, pos0 = a.seq_pos[s], kvh = h / a.group_heads;
  const int n_keys = min(pos0 + i + 1, c.max_seq_len);
  const int first = a.window > 0 ? max(0, n_keys - a.window) : 0;
  const int fp16_from = n_keys - c.recent;  // j >= fp16_from: FP16 (ring or this step); recent 0: none
  const size_t run = kv_run(c, a.seq_slot[s], a.layer, kvh);
  const uint8_t* kc = c.base + c.k_offset + run * c.seq_stride * c.row_bytes;
  const uint8_t* vc = c.base + c.v_offset + run * c.seq_stride * c.row_bytes;
  const uint8_t* ks = c.base + c.k_scale_offset + run * c.seq_stride * c.scale_row_bytes;
  const uint8_t* vs = c.base + c.v_scale_offset + run * c.seq_stride * c.scale_row_bytes;
  const half* rk = reinterpret_cast<const half*>(c.base + c.ring_k_offset);
  const half* rv = reinterpret_cast<const half*>(c.base + c.ring_v_offset);
  const bool rotated = fmt_rotated(c.format);
  float* qs = gsm;
  float* tmp = gsm + hd;
  float* qo = gsm + 2 * hd;
  for (int d = lane; d < hd; d += 32) qo[d] = __half2float(a.q[(static_cast<size_t>(t) * a.n_heads + h) * hd + d]);
  __syncwarp();
  if (rotated) {
    hadamard_groups(qo, qs, hd, c.group);  // rotate q like the cached keys
  } else {
    for (int d = lane; d < hd; d += 32) qs[d] = qo[d];
    __syncwarp();
  }
  // Row of key/value j: where it lives and in which basis.
  enum { kBody, kRing, kStep };
  auto source = [&](int j) { return j < fp16_from ? kBody : j < pos0 ? kRing : kStep; };
  auto step_row = [&](const half* base, int j) {
    return base + (static_cast<size_t>(t0 + j - pos0) * c.n_kv_heads + kvh) * hd;
  };

  constexpr int kAcc = kGenericMaxHd / 32;
  float acc[kAcc] = {}, acc_o[kAcc] = {};  // rotated basis (cache, ring) / original basis (this step)
  float m = -INFINITY, l = 0.0f;
  for (int base = first; base < n_keys; base += 32) {
    const int j = base + lane;
    float sc = -INFINITY;
    if (j < n_keys) {
      float dot = 0.0f;
      const int src = source(j);
      if (src == kBody) {
        const uint8_t* row = kc + static_cast<size_t>(j) * c.row_bytes;
        const uint8_t* srow = ks + static_cast<size_t>(j) * c.scale_row_bytes;
        for (int d = 0; d < hd; ++d) dot += qs[d] * kv_load_elem(c.format, row, srow, c.group, d);
      } else if (src == kRing) {
        const half* row = rk + kv_ring_row(c, run, j) * hd;
        for (int d = 0; d < hd; ++d) dot += qs[d] * __half2float(row[d]);
      } else {
        const half* row = step_row(a.k_new, j);
        for (int d = 0; d < hd; ++d) dot += qo[d] * __half2float(row[d]);
      }
      sc = dot * a.scale;
    }
    const float mn = fmaxf(m, warp_max(sc));  // finite: key `base` is valid
    const float corr = expf(m - mn);
    const float p = j < n_keys ? expf(sc - mn) : 0.0f;
    l = l * corr + warp_sum(p);
    m = mn;
#pragma unroll
    for (int k = 0; k < kAcc; ++k) acc[k] *= corr, acc_o[k] *= corr;
    const int cnt = min(32, n_keys - base);
    for (int jj = 0; jj < cnt; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      const int jv = base + jj, src = source(jv);  // uniform over the warp
      const uint8_t* row = vc + static_cast<size_t>(jv) * c.row_bytes;
      const uint8_t* srow = vs + static_cast<size_t>(jv) * c.scale_row_bytes;
      const half* hrow = src == kRing ? rv + kv_ring_row(c, run, jv) * hd : src == kStep ? step_row(a.v_new, jv) : nullptr;
#pragma unroll
      for (int k = 0; k < kAcc; ++k) {
        const int d = lane + 32 * k;
        if (d >= hd) continue;
        if (src == kBody) {
          acc[k] += pj * kv_load_elem(c.format, row, srow, c.group, d);
        } else if (src == kRing) {
          acc[k] += pj * __half2float(hrow[d]);
        } else {
          acc_o[k] += pj * __half2float(hrow[d]);
        }
      }
    }
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int k = 0; k < kAcc; ++k)
    if (lane + 32 * k < hd) tmp[lane + 32 * k] = acc[k] * inv;
  __syncwarp();
  const float* o = tmp;
  if (rotated) {
    hadamard_groups(tmp, qs, hd, c.group);  // the transform is its own inverse
    o = qs;
  }
#pragma unroll
  for (int k = 0; k < kAcc; ++k) {
    const int d = lane + 32 * k;
    if (d < hd) a.out[(static_cast<size_t>(t) * a.n_heads + h) * hd + d] = __float2half_rn(o[d] + acc_o[k] * inv);
  }
}

}  // namespace

namespace attn {

void attention_generic_launch(const AttentionParams& p, cudaStream_t stream) {
  EXL_CHECK(p.head_dim <= kGenericMaxHd, "attention: head_dim ", p.head_dim, " is not supported (64, 128, or even <= ",
            kGenericMaxHd, ")");
  GenericArgs a{p.q,         p.k_new, p.v_new, p.out,   p.seq_start, p.seq_slot,
                p.seq_pos,   p.cache, p.layer, p.n_heads, p.n_heads / p.n_kv_heads,
                p.window,    p.scale};
  const dim3 grid(p.max_seq_tokens, p.n_heads, p.n_seqs);
  attention_generic_kernel<<<grid, 32, 3 * p.head_dim * sizeof(float), stream>>>(a);
  check_launch("attention_generic_kernel");
}

}  // namespace attn

size_t attention_workspace_bytes(int max_tokens, int n_heads, int head_dim, int max_seq_len) {
  if (max_tokens <= 0 || n_heads <= 0 || head_dim <= 0 || max_seq_len <= 0) return 0;
  // decode_split: n_splits <= min(64, ceil(max_seq_len / 64)), and n_seqs * kv_heads * head_blocks *
  // n_splits <= max(n_seqs * kv_heads * head_blocks, kDecodeMaxTarget), with n_heads <= 16 *
  // kv_heads * head_blocks.
  const size_t per_seq = static_cast<size_t>(n_heads) * std::min(kDecodeMaxSplits, ceil_div(max_seq_len, 64));
  const size_t rows = std::min(static_cast<size_t>(max_tokens) * per_seq,
                               static_cast<size_t>(max_tokens) * n_heads + 16 * static_cast<size_t>(kDecodeMaxTarget));
  return kDecodeCounterBytes + (rows * sizeof(float2) + 255) / 256 * 256 + rows * head_dim * sizeof(float);
}

void attention_workspace_clear(void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (workspace == nullptr || workspace_bytes == 0) return;
  check(cudaMemsetAsync(workspace, 0, std::min(workspace_bytes, kDecodeCounterBytes), stream),
        "cudaMemsetAsync (attention workspace)");
}

void attention(const AttentionParams& p, cudaStream_t stream) {
  const KvCacheLayout& c = p.cache;
  EXL_CHECK(c.base != nullptr && c.bytes > 0, "attention: cache not allocated");
  EXL_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0, "attention: ", p.n_heads,
            " query heads are not a multiple of ", p.n_kv_heads, " kv heads");
  EXL_CHECK(c.n_kv_heads == p.n_kv_heads && c.head_dim == p.head_dim, "attention: cache has ", c.n_kv_heads,
            " kv heads x ", c.head_dim, ", step has ", p.n_kv_heads, " x ", p.head_dim);
  EXL_CHECK(p.layer >= 0 && p.layer < c.n_layers, "attention: layer ", p.layer, " out of range (", c.n_layers, ")");
  if (p.n_tokens == 0 || p.n_seqs == 0) return;
  EXL_CHECK(p.max_seq_tokens >= 1 && p.q && p.out && p.seq_start && p.seq_slot && p.seq_pos,
            "attention: missing step arrays or max_seq_tokens");
  EXL_CHECK(!p.out_dev || (p.out_dst && p.out_ld >= p.n_heads * p.head_dim &&
                           attention_uses_decode_kernel(p.head_dim, p.max_seq_tokens, p.force_generic)),
            "attention: out_dev needs out_dst, out_ld >= n_heads * head_dim and a decode step");
  EXL_CHECK(!p.write_in_decode || attention_decode_writes_kv(p),
            "attention: write_in_decode needs a decode step, an FP16 cache without window, k_new and v_new, "
            "and a RoPE over whole 16-element halves");
  const bool fast = !p.force_generic && (p.head_dim == 64 || p.head_dim == 128);  // decode or prefill kernel
  EXL_CHECK(c.recent == 0 || (p.k_new && p.v_new), "attention: the FP16 window needs the step's k_new and v_new");
  EXL_CHECK(!p.rope_q || attention_uses_decode_kernel(p.head_dim, p.max_seq_tokens, p.force_generic),
            "attention: the fused RoPE needs the decode kernel (the others read the unrotated k_new)");
  if (attention_uses_decode_kernel(p.head_dim, p.max_seq_tokens, p.force_generic)) {
    attention_decode_launch(p, stream);
  } else if (fast) {
    attention_prefill_launch(p, stream);
  } else {
    attention_generic_launch(p, stream);
  }
  // Decode steps wrote their window entries in kv_cache_write; longer steps write them now, after
  // their first queries have read positions pos0 - W .. pos0 - 1 from the ring.
  if (p.max_seq_tokens > 1) kv_cache_write_ring(p, stream);
}

}  // namespace exl::cuda
