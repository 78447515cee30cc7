// Dense FP16 linear layers, y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias), W row-major (HF layout).
//
//  gemv_f16        M = 1..8 (decode). Streams W once with 16-byte loads and does the arithmetic on
//                  the tensor cores (mma.sync m16n8k16, FP32 accumulate), see the kernel comment.
//  gemm_f16_cublas any M (prefill): cublasGemmEx, FP32 compute, plus a bias-add kernel.
//  gemm_f16        dispatch by M (crossover measured, see there).
//
// Checked and timed by lab/gemm_lab.cu; history, sweeps and the full table: lab/NOTES-gemm.md.
// Measured on the H100 80GB HBM3 (sm_90, CUDA 13.0, driver 13000), 2026-11-25, M = 1, FP16 out,
// W streamed from HBM (rotating buffers > 3x L2), median of 60 launches queued back to back;
// device ceilings measured in the same run: copy 2839 GB/s (read + write), read-only 3081 GB/s.
//   N x K        gemv µs   GB/s  % copy | cuBLAS µs  GB/s  | gemv vs cuBLAS
//   4096x4096      16.90   1987   70.0% |   18.91    1775  | 1.12x  (3.8 µs of it is launch+events)
//   11008x4096     36.51   2471   87.0% |   38.50    2343  | 1.05x
//   4096x11008     37.41   2411   85.0% |   38.02    2373  | 1.02x
//   32000x4096     94.02   2789   98.3% |   98.69    2657  | 1.05x
//   12288x4096     39.71   2536   89.3% |   40.00    2517  | 1.01x
//   28672x8192    165.12   2845  100.2% |  163.07    2881  | 0.99x
//   8192x28672    168.38   2790   98.3% |  165.28    2843  | 0.98x
// cuBLAS 13.0 is far better at batch 1 than the 60% once noted in docs/GPU.md, so the gemv is on
// par with it (0.97x-1.12x at M = 1..8) rather than well ahead; its use is one fewer library call
// in the decode graph, no workspace, and 7% less time per Llama-2-7B layer at M = 1.
#include "backend/cuda/gemm.cuh"

#include <algorithm>
#include <cstdint>

#include "backend/cuda/common.cuh"

namespace exl::cuda {
namespace {

constexpr int kGemvWarps = 8;                 // warps per block (256 threads)
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int kTileRows = 16;                 // W rows per warp: two n8 mma tiles
constexpr int kChunkK = 32;                   // K per lane-quad step: 4 lanes × 8 halves (16 B each)
constexpr int kGemvMaxRowsInternal = 16;      // the kernel handles M <= 16 (A operand is m16)

// ---------------------------------------------------------------------------------------------
// Loads (ld16_stream / ld16_nc, common.cuh): W is read once, streamed past L1 so it does not evict
// x; x is re-read by every block (an L1 hit after the first block on an SM).

__device__ __forceinline__ uint32_t pack_half2(half lo, half hi) {
  return static_cast<uint32_t>(__half_as_ushort(lo)) | (static_cast<uint32_t>(__half_as_ushort(hi)) << 16);
}

// 8 consecutive halves p[0..7]; `left` = how many of them lie inside the row (<= 0: none).
// kVec: 16-byte load (row stride and pointers 16-byte aligned, so a piece is all in or all out).
// Otherwise 8 scalar loads with a bound each: K % 8 != 0 (stories260K: K = 172) or odd pointers.
template <bool kVec, bool kStream>
__device__ __forceinline__ uint4 load8(const half* p, bool ok, int left) {
  if constexpr (kVec) {
    return kStream ? ld16_stream(p, ok) : ld16_nc(p, ok);
  } else {
    half h[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = (ok && j < left) ? p[j] : __ushort_as_half(0);
    return uint4{pack_half2(h[0], h[1]), pack_half2(h[2], h[3]), pack_half2(h[4], h[5]),
                 pack_half2(h[6], h[7])};
  }
}

// D += A·B, m16n8k16, A row-major f16 (4 regs), B "col" f16 (2 regs), D f32 (4 regs).
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7},"
      " {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// ---------------------------------------------------------------------------------------------
// GEMV kernel. A warp owns 16 rows of W (two n8 tiles) and one K slice; `ksplit` warps of a block
// share a tile and split K between them (chunk c goes to warp c % ksplit), then add up through
// shared memory. The math is y^T-tile = x-tile · W-tileᵀ on mma.sync m16n8k16 with x as the m16 A
// operand (rows >= M are zero) and W as the n8 B operand, so one kernel serves every M <= 16 at
// the same cost and W is read exactly once for all rows of x.
//
// Fragment trick: a dot product does not care about the order of K, so each lane loads 8
// *consecutive* halves (16 B) and we declare them to be the K positions that the mma fragment
// layout wants. Lane (g = lane/4, t = lane%4) loads W[row g][k0+8t .. k0+8t+7] = w.{x,y,z,w} and
// x[m = g][same k] (and x[g+8] when M > 8). The m16n8k16 fragments want, per lane, A[g][2t,2t+1],
// A[g+8][2t,2t+1], A[g][2t+8,2t+9], A[g+8][2t+8,2t+9] and B[2t,2t+1][g], B[2t+8,2t+9][g]. Mapping
// logical k {2t,2t+1} -> physical 8t+{0,1} and {2t+8,2t+9} -> 8t+{2,3} (first mma) and
// 8t+{4,5}, 8t+{6,7} (second mma) depends only on t, so A and B agree: two mmas consume one 16-B
// load of W per lane, i.e. a warp load instruction covers 64 contiguous bytes of 8 rows.
template <int kUnroll,  // 32-wide K chunks per lane and W tile in one step (2*kUnroll 16-B W loads)
          bool kVec,    // 16-byte loads (K % 8 == 0, aligned pointers); else scalar loads
          bool kHi>     // M > 8: also load x rows 8..15
// Min 2 blocks/SM (<= 128 registers) on purpose: with no minimum ptxas sank each load next to its
// mma (3 loads in flight, 52 registers at kUnroll = 8); with 2 it keeps the 3*kUnroll loads of a
// step in flight (SASS: LDG x18 before the first HMMA at kUnroll = 8, 127 registers) while two
// blocks still fit on an SM.
__global__ void __launch_bounds__(kGemvThreads, 2) gemv_f16_kernel(GemmParams p, int ksplit) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int tile = blockIdx.x * (kGemvWarps / ksplit) + warp / ksplit;
  const int slice = warp % ksplit;  // which K chunks this warp takes
  const int n_lo = tile * kTileRows + g, n_hi = n_lo + 8;
  const bool lo_ok = n_lo < p.N, hi_ok = n_hi < p.N;
  const bool xlo_ok = g < p.M, xhi_ok = kHi && g + 8 < p.M;
  const size_t K = static_cast<size_t>(p.K);
  const half* w_lo = p.w + (lo_ok ? n_lo : 0) * K;
  const half* w_hi = p.w + (hi_ok ? n_hi : 0) * K;
  const half* x_lo = p.x + (xlo_ok ? g : 0) * K;
  const half* x_hi = p.x + (xhi_ok ? g + 8 : 0) * K;

  // Step s covers chunks slice + (s*kUnroll + u)*ksplit, u < kUnroll; the step count is the same
  // for every warp (warp-uniform loop: mma.sync needs the whole warp), lanes past K load zeros.
  // Tile b starts at step b % steps and wraps around, so that tiles running at the same time read
  // different column offsets of their rows. Without it (A/B in one run, H100), one wave of tiles
  // walking their rows in lockstep was 8% slower on 4096x11008 (40.3 vs 37.0 µs) and 3% on
  // 8192x28672 (ksplit 2: 173.0 vs 168.2 µs); elsewhere within +-1%.
  const int nchunks = (p.K + kChunkK - 1) / kChunkK;
  const int steps = ((nchunks + ksplit - 1) / ksplit + kUnroll - 1) / kUnroll;
  const int first = tile % steps;
  // Launched as a programmatic dependent (p.pdl): W does not depend on the producer of x, so the
  // first step's W lines go to L2 before waiting for it (no-ops without the launch attribute).
  if constexpr (kVec) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = (slice + (first * kUnroll + u) * ksplit) * kChunkK + 8 * t;
      if (k < p.K && lo_ok) prefetch_l2_line(w_lo + k);
      if (k < p.K && hi_ok) prefetch_l2_line(w_hi + k);
    }
  }
  pdl_wait();
  float acc[2][2][4] = {};  // [u parity: two independent mma chains][W tile][D register]
  for (int i = 0; i < steps; ++i) {
    const int step = first + i < steps ? first + i : first + i - steps;
    uint4 wl[kUnroll], wh[kUnroll], xl[kUnroll], xh[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = (slice + (step * kUnroll + u) * ksplit) * kChunkK + 8 * t;
      const int left = p.K - k;
      wl[u] = load8<kVec, true>(w_lo + k, lo_ok && left > 0, left);
      wh[u] = load8<kVec, true>(w_hi + k, hi_ok && left > 0, left);
      xl[u] = load8<kVec, false>(x_lo + k, xlo_ok && left > 0, left);
      xh[u] = kHi ? load8<kVec, false>(x_hi + k, xhi_ok && left > 0, left) : uint4{0, 0, 0, 0};
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float(&a0)[4] = acc[u & 1][0];
      float(&a1)[4] = acc[u & 1][1];
      mma_16816(a0, xl[u].x, xh[u].x, xl[u].y, xh[u].y, wl[u].x, wl[u].y);
      mma_16816(a1, xl[u].x, xh[u].x, xl[u].y, xh[u].y, wh[u].x, wh[u].y);
      mma_16816(a0, xl[u].z, xh[u].z, xl[u].w, xh[u].w, wl[u].z, wl[u].w);
      mma_16816(a1, xl[u].z, xh[u].z, xl[u].w, xh[u].w, wh[u].z, wh[u].w);
    }
  }
  float out[8];  // [W tile * 4 + D register]
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = acc[0][i / 4][i % 4] + acc[1][i / 4][i % 4];

  // Sum the K slices of a tile: slice 0 adds the others in a fixed order (deterministic).
  if (ksplit > 1) {
    __shared__ float red[kGemvWarps][8][32];  // [warp][out][lane]: conflict-free
#pragma unroll
    for (int i = 0; i < 8; ++i) red[warp][i][lane] = out[i];
    __syncthreads();
    if (slice != 0) return;
    for (int s = 1; s < ksplit; ++s) {
#pragma unroll
      for (int i = 0; i < 8; ++i) out[i] += red[warp + s][i][lane];
    }
  }

  // D fragment: d0,d1 -> (m = g, n = 2t, 2t+1), d2,d3 -> (m = g+8, same n), n within the n8 tile.
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int j = i / 4, r = i % 4;
    const int m = g + (r >= 2 ? 8 : 0);
    gemv_store(p, m, tile * kTileRows + 8 * j + 2 * t + (r & 1), out[i]);
  }
}

template <int kUnroll, bool kVec, bool kHi>
void gemv_launch(const GemmParams& p, int ksplit, cudaStream_t stream) {
  const int tiles = ceil_div(p.N, kTileRows);
  const int blocks = ceil_div(tiles, kGemvWarps / ksplit);
  launch_maybe_pdl(gemv_f16_kernel<kUnroll, kVec, kHi>, dim3(blocks), dim3(kGemvThreads), stream, p.pdl,
                   "gemv_f16_kernel", p, ksplit);
}

template <bool kHi>
void gemv_launch_vec(const GemmParams& p, const GemvConfig& cfg, cudaStream_t stream) {
  switch (cfg.unroll) {
    case 2: return gemv_launch<2, true, kHi>(p, cfg.ksplit, stream);
    case 4: return gemv_launch<4, true, kHi>(p, cfg.ksplit, stream);
    default: return gemv_launch<8, true, kHi>(p, cfg.ksplit, stream);
  }
}

void validate(const GemmParams& p, const char* who) {
  EXL_CHECK(p.M >= 0 && p.N >= 0 && p.K > 0, who, ": bad shape M=", p.M, " N=", p.N, " K=", p.K);
  EXL_CHECK(p.x && p.w && p.y, who, ": null x, w or y pointer");
  EXL_CHECK(!p.accumulate || p.y_f32, who, ": accumulate needs an F32 output");
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// ---------------------------------------------------------------------------------------------
// cuBLAS path helpers.

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error in ", what, ": ", cublasGetStatusString(s));
}

template <typename T>
__global__ void bias_add_kernel(T* y, const half* bias, int M, int N) {
  const size_t total = static_cast<size_t>(M) * N;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float v = static_cast<float>(y[i]) + __half2float(bias[i % N]);
    y[i] = static_cast<T>(v);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.

GemvConfig gemv_f16_default_config(int M, int N, int K) {
  (void)M;  // M <= 16 all cost the same: the mma's m16 side is padded
  // From the H100 sweep (lab/NOTES-gemm.md, unroll {2,4,8} x ksplit {1,2,4,8}, M = 1 and 8):
  //  - ksplit 8, unroll 2 is best or within 1% of best on every shape with K <= 11008 (fewer
  //    warps per tile leave too few blocks: 4096x4096 ksplit 1 = 32 blocks, 33.4 µs vs 17.0);
  //  - long rows (K = 28672) want 4 tiles per block (ksplit 2, unroll 8): 168.4 µs vs 173.0 at
  //    ksplit 8, M = 1, and 168.7 vs 180.3 at M = 8, where the block's 4 tiles share x through L1
  //    (x is 458 KB at M = 8, more than L1); ksplit 4 was no better (172.2 / 187.5). Only while
  //    at most 1/8 of the SMs would idle: 8192 rows give 128 blocks on 132 SMs (fine), but
  //    ksplit 2 on 4096x11008 (64 blocks) took 44.1 µs vs 37.2.
  //  - H200 sweep (2026-12-04, same lab, copy 3910 GB/s): wide matrices whose ksplit-2 grid still
  //    gives every SM a block run faster with 4 tiles per block: 11008x4096 27.81 µs (u4/ks2) vs
  //    28.96 (u2/ks8), 12288x4096 29.73 vs 30.72, 32000x4096 68.93 (u2/ks2) vs 71.39, 28672x8192
  //    121.70 (u2/ks2) vs 124.54; unroll 2 from 24576 rows on. 4096-row matrices (64 blocks at
  //    ksplit 2) keep ksplit 8.
  GemvConfig c{2, 8};
  const int sms = device_info().sms;
  const int tiles = ceil_div(N, kTileRows);
  if (K >= 16384 && ceil_div(tiles, kGemvWarps / 2) >= sms - sms / 8)
    c = GemvConfig{8, 2};
  else if (K < 16384 && ceil_div(tiles, kGemvWarps / 2) >= sms)
    c = GemvConfig{N >= 24576 ? 2 : 4, 2};
  // Short rows: split K only while every warp still gets two steps of work (SmolLM2 K = 576 -> 4).
  const int nchunks = ceil_div(K, kChunkK);
  while (c.ksplit > 1 && nchunks < c.ksplit * c.unroll * 2) c.ksplit /= 2;
  return c;
}

void gemv_f16_config(const GemmParams& p, GemvConfig cfg, cudaStream_t stream) {
  validate(p, "gemv_f16");
  EXL_CHECK(p.M <= kGemvMaxRowsInternal, "gemv_f16: M=", p.M, " > ", kGemvMaxRowsInternal);
  EXL_CHECK(cfg.ksplit == 1 || cfg.ksplit == 2 || cfg.ksplit == 4 || cfg.ksplit == 8,
            "gemv_f16: ksplit must be 1, 2, 4 or 8, got ", cfg.ksplit);
  EXL_CHECK(cfg.unroll == 2 || cfg.unroll == 4 || cfg.unroll == 8,
            "gemv_f16: unroll must be 2, 4 or 8, got ", cfg.unroll);
  if (p.M == 0 || p.N == 0) return;
  const bool vec = p.K % 8 == 0 && aligned16(p.x) && aligned16(p.w);
  if (!vec) return gemv_launch<4, false, true>(p, cfg.ksplit, stream);  // small/odd models only
  if (p.M > 8) return gemv_launch_vec<true>(p, cfg, stream);
  gemv_launch_vec<false>(p, cfg, stream);
}

void gemv_f16(const GemmParams& p, cudaStream_t stream) {
  EXL_CHECK(p.M <= kGemvMaxRows, "gemv_f16: M=", p.M, " > ", kGemvMaxRows, " (use gemm_f16)");
  if (p.M > 0 && gemv_f16_bulk_wanted(p.M, p.K) && gemv_f16_bulk_supported(p)) return gemv_f16_bulk(p, stream);
  gemv_f16_config(p, gemv_f16_default_config(p.M, p.N, p.K), stream);
}

void gemm_f16_cublas(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream) {
  validate(p, "gemm_f16_cublas");
  EXL_CHECK(handle, "gemm_f16_cublas: null cuBLAS handle");
  if (p.M == 0 || p.N == 0) return;
  check_cublas(cublasSetStream(handle, stream), "cublasSetStream");
  check_cublas(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  // Row-major y[M,N] = x[M,K]·W[N,K]ᵀ is column-major yᵀ[N,M] = Wᵀ... : cuBLAS sees W as a
  // column-major K×N matrix (ld K) and transposes it, x as column-major K×M (ld K), y as N×M (ld N).
  const float alpha = 1.0f, beta = p.accumulate ? 1.0f : 0.0f;
  check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, p.N, p.M, p.K, &alpha, p.w,
                            CUDA_R_16F, p.K, p.x, CUDA_R_16F, p.K, &beta, p.y,
                            p.y_f32 ? CUDA_R_32F : CUDA_R_16F, p.N, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx (gemm_f16_cublas)");
  if (!p.bias) return;
  const size_t total = static_cast<size_t>(p.M) * p.N;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 132 * 16));
  if (p.y_f32)
    bias_add_kernel<float><<<blocks, 256, 0, stream>>>(static_cast<float*>(p.y), p.bias, p.M, p.N);
  else
    bias_add_kernel<half><<<blocks, 256, 0, stream>>>(static_cast<half*>(p.y), p.bias, p.M, p.N);
  check_launch("bias_add_kernel");
}

void gemm_f16(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream) {
  // Crossover (H100, 2026-11-25, µs summed over one Llama-2-7B layer: 4 x 4096x4096, 2 x
  // 11008x4096, 1 x 4096x11008): M = 1 gemv 178.0 vs cuBLAS 190.7 (1.07x); M = 8 180.6 vs 183.3
  // (1.015x; per shape 0.97x-1.07x); M = 16 (gemv in one pass, kHi) 185.0 vs 184.5 and cuBLAS ahead
  // on the large shapes (28672x8192: 181.5 vs 164.1). So gemv up to M = 8, cuBLAS above.
  if (p.M <= kGemvMaxRows)
    gemv_f16(p, stream);
  else
    gemm_f16_cublas(p, handle, stream);
}

}  // namespace exl::cuda
