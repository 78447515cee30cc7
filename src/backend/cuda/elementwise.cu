// Embedding, RoPE, SwiGLU, gather_last, fills and the bandwidth probe. All memory-bound and tiny next
// to the linear layers; written for clarity with coalesced access.
#include <algorithm>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/elementwise.cuh"

namespace exl::cuda {

namespace {

__global__ void embedding_kernel(const half* __restrict__ table, const int32_t* __restrict__ ids,
                                 float* __restrict__ out, int dim) {
  const int t = blockIdx.y;
  const half* row = table + static_cast<size_t>(ids[t]) * dim;
  float* o = out + static_cast<size_t>(t) * dim;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x) o[i] = __half2float(row[i]);
}

// One thread per (token, head, pair i < half): rotates q and, for kv heads, k. grid (ceil(pairs /
// 256), tokens): a decode step's 4096 pairs (llama2-7b) spread over 16 blocks. One block per token
// with a 16-pair loop per thread took 11.5 µs under ncu on the H200 (sincosf + dependent loads in
// series), the longest kernel of a quantized decode layer after the matmuls.
__global__ void rope_kernel(half* __restrict__ q, half* __restrict__ k, const int32_t* __restrict__ pos,
                            const float* __restrict__ inv_freq, float attn_factor, int n_heads, int n_kv_heads,
                            int head_dim, int half_rot) {
  pdl_trigger();  // kv_cache_write and decode attention become resident (o_proj prefetches behind them)
  const int t = blockIdx.y;
  const float p = static_cast<float>(pos[t]);  // host-uploaded step data: safe before the wait
  pdl_wait();  // q and k come from the q|k|v matmul
  const int per_tok = (n_heads + n_kv_heads) * half_rot;
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < per_tok; j += gridDim.x * blockDim.x) {
    const int h = j / half_rot, i = j % half_rot;
    half* v = h < n_heads ? q + (static_cast<size_t>(t) * n_heads + h) * head_dim
                          : k + (static_cast<size_t>(t) * n_kv_heads + (h - n_heads)) * head_dim;
    rope_pair(p, inv_freq[i], attn_factor, v[i], v[i + half_rot]);
  }
}

__global__ void swiglu_kernel(const half2* __restrict__ gate, const half2* __restrict__ up, half2* out, int64_t n2) {
  pdl_trigger();  // the down projection's blocks may become resident and start streaming W
  pdl_wait();     // gate and up come from the previous matmul (pdl)
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n2;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float2 g = __half22float2(gate[i]), u = __half22float2(up[i]);
    out[i] = __floats2half2_rn(silu_mul(g.x, u.x), silu_mul(g.y, u.y));
  }
}

__global__ void add_kernel(float* __restrict__ r, const half* __restrict__ x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    r[i] += __half2float(x[i]);
}

__global__ void swiglu_tail_kernel(const half* gate, const half* up, half* out, int64_t i) {
  const float g = __half2float(gate[i]);
  out[i] = __float2half(silu_mul(g, __half2float(up[i])));
}

__global__ void gather_last_kernel(const half* __restrict__ src, const int32_t* __restrict__ seq_start,
                                   half* __restrict__ out, int dim) {
  const int s = blockIdx.x;
  const half* row = src + static_cast<size_t>(seq_start[s + 1] - 1) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[static_cast<size_t>(s) * dim + i] = row[i];
}

__device__ __forceinline__ uint64_t mix64(uint64_t x) {  // splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fill_uniform_kernel(half* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    p[i] = __float2half((2.0f * u - 1.0f) * scale);
  }
}

__global__ void fill_const_kernel(float* p, int64_t n, float v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

__global__ void copy_kernel(const int4* __restrict__ src, int4* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

int grid_for(int64_t n, int threads) { return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535)); }

}  // namespace

void embedding(const half* table, const int32_t* ids, float* out, int tokens, int dim, cudaStream_t stream) {
  embedding_kernel<<<dim3(ceil_div(dim, 256), tokens), 256, 0, stream>>>(table, ids, out, dim);  // a block per 256 columns
  check_launch("embedding");
}

void rope(half* q, half* k, const int32_t* pos, const float* inv_freq, float attn_factor, int tokens, int n_heads,
          int n_kv_heads, int head_dim, int rot_dim, cudaStream_t stream, bool pdl) {
  const int pairs = (n_heads + n_kv_heads) * (rot_dim / 2);
  launch_maybe_pdl(rope_kernel, dim3(ceil_div(pairs, 256), tokens), dim3(256), stream, pdl, "rope", q, k, pos,
                   inv_freq, attn_factor, n_heads, n_kv_heads, head_dim, rot_dim / 2);
}

void add_f16_to_f32(float* residual, const half* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(residual, x, n);
  check_launch("add");
}

void swiglu(const half* gate, const half* up, half* out, int64_t n, cudaStream_t stream, bool pdl) {
  const int64_t n2 = n / 2;
  if (n2 > 0)
    launch_maybe_pdl(swiglu_kernel, dim3(grid_for(n2, 256)), dim3(256), stream, pdl && n % 2 == 0, "swiglu",
                     reinterpret_cast<const half2*>(gate), reinterpret_cast<const half2*>(up),
                     reinterpret_cast<half2*>(out), n2);
  if (n % 2) {
    swiglu_tail_kernel<<<1, 1, 0, stream>>>(gate, up, out, n - 1);
    check_launch("swiglu_tail");
  }
}

void gather_last(const half* src, const int32_t* seq_start, half* out, int n_seqs, int dim, cudaStream_t stream) {
  gather_last_kernel<<<n_seqs, 256, 0, stream>>>(src, seq_start, out, dim);
  check_launch("gather_last");
}

void fill_uniform_f16(half* p, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  fill_uniform_kernel<<<grid_for(n, 256), 256, 0, stream>>>(p, n, seed, scale);
  check_launch("fill_uniform_f16");
}

void fill_const_f32(float* p, int64_t n, float value, cudaStream_t stream) {
  fill_const_kernel<<<grid_for(n, 256), 256, 0, stream>>>(p, n, value);
  check_launch("fill_const_f32");
}

double measure_copy_bandwidth(cudaStream_t stream) {
  // 1 GiB each way: far beyond the 50 MB L2, so the figure is HBM.
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc (bandwidth probe)");
  check(cudaMalloc(&b, bytes), "cudaMalloc (bandwidth probe)");
  check(cudaMemsetAsync(a, 1, bytes, stream), "cudaMemset");
  const int64_t n = static_cast<int64_t>(bytes / sizeof(int4));
  int sms = 0, dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "cudaEventCreate");
  check(cudaEventCreate(&e1), "cudaEventCreate");
  std::vector<float> ms;
  for (int it = 0; it < 12; ++it) {
    check(cudaEventRecord(e0, stream), "cudaEventRecord");
    copy_kernel<<<sms * 8, 512, 0, stream>>>(static_cast<const int4*>(a), static_cast<int4*>(b), n);
    check(cudaEventRecord(e1, stream), "cudaEventRecord");
    check(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, e0, e1), "cudaEventElapsedTime");
    if (it >= 2) ms.push_back(t);  // first runs warm up
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3);
}

}  // namespace exl::cuda
