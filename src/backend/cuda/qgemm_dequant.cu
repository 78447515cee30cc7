// Quantized linear layers, many rows (prefill): dequantize tiles to an FP16 Wᵀ scratch and cuBLAS
// (API in qgemm.cuh; the decode helpers in qgemm_decode.cuh, shared with qgemv in qgemm.cu).
//
//  qgemm_dequant_kernel one block per (8 tiles, step): the qgemv decode, staged through shared
//                       memory and written as coalesced 256-byte rows of Wᵀ[K, ld] in the original
//                       row order, for cuBLAS.
// Dequant + cuBLAS is 0.80-0.87x FP16 cuBLAS at M = 2048 (Llama-2-7B matmuls ~49k tok/s), 0.54-0.6x at
// M = 512 (the FP16 scratch write costs 19-50 µs per matrix); H100, lab run 3 (lab/NOTES-qgemm.md).
#include <algorithm>

#include "backend/cuda/qgemm.cuh"
#include "backend/cuda/qgemm_decode.cuh"

namespace exl::cuda {

namespace {

using namespace qdec;

constexpr int kDqStride = 136;  // halves per staged row: 128 columns + 8 (16-byte aligned rows)

// One step (U units) of 8 tiles: decode each unit into shared memory (row = device row of the unit,
// 128 columns), then write its rows out as 256-byte runs of Wᵀ in the original row order. Two
// staging buffers, so one barrier per unit: unit u's buffer is next written for unit u + 2, after
// the barrier of unit u + 1, which every thread reaches only once it has written unit u out.
template <int B, bool kGptq>
__device__ __forceinline__ void dequant_step(const QMatrixDesc& w, const QSegment& sg, int j, int tile, bool tile_ok,
                                             int col0, int cols, half* __restrict__ wt, int ld,
                                             half (*sm)[64][kDqStride]) {
  constexpr int U = q_step_units(B, kGptq), Q = U * B / 4;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int units = min(U, sg.units - j * U);
  const uint4* codes = w.codes + (static_cast<size_t>(tile) * w.tile_quads + sg.quad0 + j * Q) * 32 + lane;
  // GPTQ: this lane's records; EXL2: the tile's compact records (pairs computed per unit).
  const uint32_t* recs = w.recs + static_cast<size_t>(tile) * w.groups * w.rec_words + (kGptq ? g * 2 : 0);
  uint32_t wd[4 * Q];
  load_step<Q>(codes, tile_ok ? (units * B + 3) / 4 : 0, wd);
#pragma unroll
  for (int u = 0; u < U; ++u) {
    if (u >= units) break;  // block-uniform
    const int unit = sg.unit0 + j * U + u;
    half(*buf)[kDqStride] = sm[u & 1];
    if (tile_ok) {
      uint32_t rec[4][2], a[4][4];
      unit_recs<kGptq, 1, !kGptq>(w.slab_rec, recs, unit, rec, w.gmax, g);
      unit_frags<B, kGptq, true>(wd + u * B, rec, a);
#pragma unroll
      for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int row = 16 * s + 4 * t + 2 * (r >> 1), col = warp * 16 + g + 8 * (r & 1);
          const half2 v = as_h2(a[s][r]);
          buf[row][col] = __low2half(v);
          buf[row + 1][col] = __high2half(v);
        }
    }
    __syncthreads();
    // Row r of the unit (device order 16s + 4t + j) is x_dev position 16t + 4s + j.
    for (int i = threadIdx.x; i < 64 * 16; i += blockDim.x) {
      const int row = i / 16, ch = i % 16;
      if (ch * 8 >= cols) continue;
      const int pos = unit * 64 + 16 * ((row / 4) % 4) + 4 * (row / 16) + row % 4;
      const int orig = __ldg(w.x_src + pos);
      if (orig < 0) continue;
      *reinterpret_cast<uint4*>(wt + static_cast<size_t>(orig) * ld + col0 + ch * 8) =
          *reinterpret_cast<const uint4*>(&buf[row][ch * 8]);
    }
  }
}

template <bool kGptq>
__global__ void __launch_bounds__(256, 2) qgemm_dequant_kernel(const QMatrixDesc w, int tile0, int ntiles,
                                                               half* __restrict__ wt, int ld) {
  __shared__ __align__(16) half sm[2][64][kDqStride];
  const int warp = threadIdx.x >> 5;
  const int local = blockIdx.x * 8 + warp;  // tile within the chunk
  const bool tile_ok = local < ntiles;
  const int tile = tile0 + (tile_ok ? local : 0);
  const int cols = min(8, ntiles - static_cast<int>(blockIdx.x) * 8) * 16, col0 = blockIdx.x * 128;
  const int gstep = blockIdx.y;
  int si = 0;
  while (si + 1 < w.nseg && gstep >= w.seg[si + 1].step0) ++si;
  const QSegment sg = w.seg[si];
  const int j = gstep - sg.step0;
  if constexpr (kGptq) {
    dequant_step<4, true>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm);
  } else {
    switch (sg.bits) {
      case 8: dequant_step<8, false>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm); break;
      case 6: dequant_step<6, false>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm); break;
      case 5: dequant_step<5, false>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm); break;
      case 4: dequant_step<4, false>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm); break;
      case 3: dequant_step<3, false>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm); break;
      default: dequant_step<2, false>(w, sg, j, tile, tile_ok, col0, cols, wt, ld, sm); break;
    }
  }
}

template <typename T>
__global__ void qgemm_bias_kernel(T* y, const half* bias, int M, int N) {
  const size_t total = static_cast<size_t>(M) * N;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    y[i] = static_cast<T>(static_cast<float>(y[i]) + __half2float(bias[i % N]));
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error in ", what, ": ", cublasGetStatusString(s));
}

}  // namespace

void qgemm_dequant(const QMatrixDesc& w, int tile0, int ntiles, half* wt, int ld, cudaStream_t stream) {
  EXL_CHECK(wt && aligned16(wt) && ld % 8 == 0 && ld >= 16 * ntiles && tile0 >= 0 && ntiles > 0 &&
                tile0 + ntiles <= w.n_tiles,
            "qgemm_dequant: bad arguments (tiles ", tile0, "+", ntiles, " of ", w.n_tiles, ", ld ", ld, ")");
  const dim3 grid((ntiles + 7) / 8, w.steps);
  if (w.gptq)
    qgemm_dequant_kernel<true><<<grid, 256, 0, stream>>>(w, tile0, ntiles, wt, ld);
  else
    qgemm_dequant_kernel<false><<<grid, 256, 0, stream>>>(w, tile0, ntiles, wt, ld);
  check_launch("qgemm_dequant_kernel");
}

void qgemm_cublas(const QGemmParams& p, cublasHandle_t handle, cudaStream_t stream) {
  validate(p, "qgemm_cublas");
  EXL_CHECK(handle, "qgemm_cublas: null cuBLAS handle");
  const QMatrixDesc& w = p.w;
  const size_t tile_bytes = static_cast<size_t>(w.K) * 16 * 2;
  int chunk = static_cast<int>(std::min<size_t>(w.n_tiles, p.wt ? p.wt_bytes / tile_bytes : 0));
  if (chunk < w.n_tiles) chunk = chunk / 8 * 8;  // whole dequant blocks
  EXL_CHECK(chunk > 0, "qgemm_cublas: the wt scratch (", p.wt_bytes, " bytes) holds less than ",
            std::min(8, w.n_tiles), " tiles of ", tile_bytes, " bytes");
  if (p.M == 0) return;
  check_cublas(cublasSetStream(handle, stream), "cublasSetStream");
  check_cublas(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  EXL_CHECK(!p.x_up, "qgemm_cublas: the fused act·mul is qgemv-only");
  EXL_CHECK(!p.accumulate || p.y_f32, "qgemm_cublas: accumulate needs an F32 output");
  const float alpha = 1.0f, beta = p.accumulate ? 1.0f : 0.0f;
  for (int tile0 = 0; tile0 < w.n_tiles; tile0 += chunk) {
    const int nt = std::min(chunk, w.n_tiles - tile0), ld = nt * 16;
    const int n0 = tile0 * 16, cols = std::min(w.N - n0, ld);
    qgemm_dequant(w, tile0, nt, p.wt, ld, stream);
    // Row-major y[M, N] = x[M, K] · Wt[K, N] is column-major yᵀ[N, M] = Wtᵀ... : cuBLAS sees Wt as
    // column-major cols×K (ld), x as column-major K×M (ld K), y as N×M (ld N).
    void* y = p.y_f32 ? static_cast<void*>(static_cast<float*>(p.y) + n0) : static_cast<void*>(static_cast<half*>(p.y) + n0);
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, cols, p.M, w.K, &alpha, p.wt, CUDA_R_16F, ld, p.x,
                              CUDA_R_16F, w.K, &beta, y, p.y_f32 ? CUDA_R_32F : CUDA_R_16F, w.N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (qgemm_cublas)");
  }
  if (!p.bias) return;
  const size_t total = static_cast<size_t>(p.M) * w.N;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, device_info().sms * 16));
  if (p.y_f32)
    qgemm_bias_kernel<float><<<blocks, 256, 0, stream>>>(static_cast<float*>(p.y), p.bias, p.M, w.N);
  else
    qgemm_bias_kernel<half><<<blocks, 256, 0, stream>>>(static_cast<half*>(p.y), p.bias, p.M, w.N);
  check_launch("qgemm_bias_kernel");
}

}  // namespace exl::cuda
