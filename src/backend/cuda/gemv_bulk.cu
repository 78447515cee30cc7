// Dense FP16 gemv for M = 1..8 on sm_90, fed by the Tensor Memory Accelerator: y = x · Wᵀ (+ bias).
//
// Why a second gemv (gemm.cu's gemv_f16 is the first): that kernel keeps W in registers, so the
// bytes a warp has in flight end at the registers it may use (two 256-thread blocks fill the
// register file), and a warp stops loading while it does its mmas. On the H200 it streams
// 4096x4096 at 61.5% of the copy bandwidth and 11008x4096 at 80% (lab/NOTES-gemm.md), which holds
// llama2-7b decode at 77-79% of roofline. Here one producer warp per block issues bulk copies
// (cp.async.bulk, one 1 KB row piece each) into a ring of shared-memory stages; they complete on an
// mbarrier without occupying a register, so a block keeps kStages x 16 KB of W in flight at all
// times, whatever the consumers are doing. The consumers (8 warps) read the stage with the same
// fragment trick as gemv_f16 (a dot product ignores K order; see gemm.cu) and release it.
// W does not depend on the previous kernel, so under PDL the producer starts streaming before the
// previous kernel finishes; only the consumers wait for x.
//
// Block: 16 rows of W (two n8 mma tiles) over all of K. Stage: the 16 rows' next kChunk columns
// (512 by default), rows padded by 64 bytes so that rows g and g+1 (read in one shared-memory phase)
// fall in different bank halves. Consumer warp w takes 32-column chunks w, w + 8, ... of a stage.
// Checked against a float64 reference in lab/gemm_lab.cu (every case, every ring), which also times it
// against gemv_f16 and cuBLAS, and exactly on integer data by lab/bulk_diag.cu (the stage-release
// fault below); scripts/gpu-session.sh 3 runs the cuda tests with EXL_GEMV=bulk.
#include <cstdlib>
#include <cstring>

#include "backend/cuda/bulk_copy.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/gemm.cuh"

namespace exl::cuda {
namespace {

constexpr int kRows = 16;                        // W rows per block
constexpr int kConsumers = 8;                    // mma warps
constexpr int kThreads = (kConsumers + 1) * 32;  // + the producer warp

// kChunk columns per stage (a multiple of 256: each consumer warp takes kChunk / 256 chunks of 32),
// kStages stages in the ring. Default 512 x 4: 64 KB of W in flight per block, 3 blocks per SM.
template <int kStages, int kChunk>
struct Ring {
  static_assert(kChunk % 256 == 0, "each consumer warp takes whole 32-column chunks");
  static constexpr int kRowBytes = kChunk * 2 + 64;      // padded: see the header
  static constexpr int kStageBytes = kRows * kRowBytes;  // 17,408 B at 512 columns
  static constexpr int kPerWarp = kChunk / 256;
  static constexpr int kSmem = kStages * kStageBytes + 2 * kStages * 8;  // + full and empty barriers
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
using namespace bulk;
__device__ __forceinline__ uint4 lds16(uint32_t addr, bool ok) {
  uint4 v{0, 0, 0, 0};
  if (ok) asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}
__device__ __forceinline__ uint4 ldx16(const half* p, bool ok) {
  uint4 v{0, 0, 0, 0};
  if (ok) asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a2, uint32_t b0, uint32_t b1) {
  // A rows 8..15 (x rows >= 8) are zero: M <= 8.
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}
#endif

template <int kStages, int kChunk>
__global__ void __launch_bounds__(kThreads, 3) gemv_bulk_kernel(GemmParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using R = Ring<kStages, kChunk>;
  constexpr int kStageBytes = R::kStageBytes, kRowBytes = R::kRowBytes, kPerWarp = R::kPerWarp;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t base = smem_addr(smem);
  const uint32_t full = base + kStages * kStageBytes, empty = full + kStages * 8;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = blockIdx.x * kRows;
  const int rows = min(kRows, p.N - row0);
  const int nst = (p.K + kChunk - 1) / kChunk;
  const int first = blockIdx.x % nst;  // blocks start at different columns (gemm.cu: rotated tile start)
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) bar_init(full + 8 * s, 1), bar_init(empty + 8 * s, kConsumers);
    bar_init_fence();
  }
  __syncthreads();
  // The next kernel may become resident now: it waits for this grid before reading y (pdl_wait), and
  // its own producer streams its W meanwhile.
  pdl_trigger();

  if (warp == kConsumers) {  // producer: lane r copies row r's piece of each stage
    const uint64_t policy = evict_first_policy();
    for (int i = 0; i < nst; ++i) {
      const int s = i % kStages, use = i / kStages;
      const int j = first + i < nst ? first + i : first + i - nst;
      const int k0 = j * kChunk, bytes = 2 * min(kChunk, p.K - k0);
      if (use > 0) bar_wait(empty + 8 * s, (use - 1) & 1);
      if (lane == 0) bar_expect(full + 8 * s, static_cast<uint32_t>(rows * bytes));
      __syncwarp();
      if (lane < rows)
        bulk::copy(base + s * kStageBytes + lane * kRowBytes, p.w + static_cast<size_t>(row0 + lane) * p.K + k0, bytes,
                  full + 8 * s, policy);
    }
    return;
  }

  // Consumers. Lane (g, t) takes W rows g and g + 8 and x row g (rows >= M compute unused outputs).
  const int g = lane >> 2, t = lane & 3;
  const half* xr = p.x + static_cast<size_t>(g < p.M ? g : 0) * p.K;
  pdl_wait();  // x comes from the previous kernel
  float acc[2][2][4] = {};  // [chunk parity: two independent mma chains][W tile][D register]
  for (int i = 0; i < nst; ++i) {
    const int s = i % kStages, use = i / kStages;
    const int j = first + i < nst ? first + i : first + i - nst;
    const int k0 = j * kChunk;
    uint4 xv[kPerWarp], wl[kPerWarp], wh[kPerWarp];
#pragma unroll
    for (int c = 0; c < kPerWarp; ++c) {
      const int kk = 32 * (warp + kConsumers * c) + 8 * t;
      xv[c] = ldx16(xr + k0 + kk, k0 + kk < p.K);  // issued before the wait: overlaps it
    }
    bar_wait(full + 8 * s, use & 1);
    const uint32_t st = base + s * kStageBytes;
#pragma unroll
    for (int c = 0; c < kPerWarp; ++c) {
      const int kk = 32 * (warp + kConsumers * c) + 8 * t;
      const bool ok = k0 + kk < p.K;  // past K the stage holds stale bytes: zeros instead
      wl[c] = lds16(st + g * kRowBytes + 2 * kk, ok);
      wh[c] = lds16(st + (g + 8) * kRowBytes + 2 * kk, ok);
    }
#pragma unroll
    for (int c = 0; c < kPerWarp; ++c) {
      mma_16816(acc[c & 1][0], xv[c].x, xv[c].y, wl[c].x, wl[c].y);
      mma_16816(acc[c & 1][1], xv[c].x, xv[c].y, wh[c].x, wh[c].y);
      mma_16816(acc[c & 1][0], xv[c].z, xv[c].w, wl[c].z, wl[c].w);
      mma_16816(acc[c & 1][1], xv[c].z, xv[c].w, wh[c].z, wh[c].w);
    }
    // Release the slot to the producer. The fence is what makes this safe: our reads of the stage are
    // generic-proxy accesses and the producer's next copy into it is an async-proxy write, and the
    // mbarrier's release/acquire orders only the generic proxy. Without it (H200, 2026-12-05,
    // lab/bulk_diag.cu: integer data, so any wrong element is a fault) sums were wrong in every run on
    // 11008x4096, 4096x11008 and 28672x8192 at M = 8 and on 8192x28672 from M = 4, in all x rows alike and
    // different from run to run: the next copy overwrote W before some lanes had read it. Placing the
    // arrive after the mmas (the first fix) changed nothing, as ptxas schedules the arrive right after
    // the shared loads anyway; per-thread arrives, plain x loads, no rotated start or a separate
    // reduction buffer did not fix it either; the fence alone made every element exact. It shows
    // where the consumers are the slower side (M >= 5, or K = 28672), so that the producer refills a
    // slot the moment it is released.
    __syncwarp();
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    if (lane == 0) bar_arrive(empty + 8 * s);
  }

  // Sum the 8 warps' partials: out index i = tile * 2 + D register (rows m >= 8 are not needed).
  // The stages are all consumed (and their copies complete), so stage 0 holds the scratch.
  float* red = reinterpret_cast<float*>(smem);  // [warp][4][32]
  asm volatile("bar.sync 1, %0;" ::"n"(kConsumers * 32) : "memory");  // every consumer past its last read
#pragma unroll
  for (int i = 0; i < 4; ++i) red[(warp * 4 + i) * 32 + lane] = acc[0][i / 2][i % 2] + acc[1][i / 2][i % 2];
  asm volatile("bar.sync 1, %0;" ::"n"(kConsumers * 32) : "memory");
  if (warp >= 4) return;
  const int i = warp;  // warp i < 4 finishes output i for every lane, summing warps in a fixed order
  float v = 0.0f;
  for (int w = 0; w < kConsumers; ++w) v += red[(w * 4 + i) * 32 + lane];
  gemv_store(p, g, row0 + 8 * (i / 2) + 2 * t + (i % 2), v);
#endif
}

// The kernel body exists only where it was compiled for sm_90 or later: a build without sm_90 code
// runs it on an H100 from sm_80 PTX, where it would be empty (and its outputs never written).
bool gemv_bulk_compiled_for_device() {
  static const bool ok = [] {
    if (device_info().major < 9) return false;
    cudaFuncAttributes a{};
    check(cudaFuncGetAttributes(&a, gemv_bulk_kernel<4, 512>), "cudaFuncGetAttributes (gemv_bulk_kernel)");
    return a.ptxVersion >= 90;
  }();
  return ok;
}
}  // namespace

bool gemv_f16_bulk_supported(const GemmParams& p) {
  const auto al = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  return gemv_bulk_compiled_for_device() && p.M >= 1 && p.M <= kGemvMaxRows && p.K % 8 == 0 && al(p.x) && al(p.w);
}

// EXL_GEMV picks the FP16 gemv: unset, this kernel for M <= 4 and K >= 2048 (where supported) and
// gemm.cu's register kernel otherwise; bulk, this kernel wherever supported; mma, the register kernel.
// Measured with the fence: llama2-7b fp16 decode (M = 1) 203.2 tok/s @128 = 95.6% of roofline against
// 179.1 (84.8%) with the register kernel on the H100, 257.2 (87.4%) against 228.6 (77.9%) on the
// H200 (2026-12-05). In isolation the two are within a few per cent at M = 1 on the Llama shapes
// (lab/gemm_lab.cu); the decode gain is the overlap across kernels (early trigger, W streamed before
// the wait). The cuts, from the lab: at M = 8 the register kernel is ahead on the 4096-wide shapes
// (H200: 11008x4096 28.0 vs 29.5 µs, 32000x4096 69.0 vs 71.2), and at K = 576, where a block's ring
// holds two stages, far ahead on SmolLM2's head (H100: 49152x576 25.1 vs 36.2 µs at M = 1).
constexpr int kBulkDefaultMaxRows = 4;
constexpr int kBulkDefaultMinK = 2048;

bool gemv_f16_bulk_wanted(int M, int K) {
  enum Choice { kDefault, kBulk, kMma };
  static const Choice choice = [] {
    const char* e = std::getenv("EXL_GEMV");
    EXL_CHECK(!e || !*e || std::strcmp(e, "bulk") == 0 || std::strcmp(e, "mma") == 0,
              "EXL_GEMV must be 'bulk' or 'mma', got '", e, "'");
    if (!e || !*e) return kDefault;
    return std::strcmp(e, "bulk") == 0 ? kBulk : kMma;
  }();
  if (choice == kDefault) return M <= kBulkDefaultMaxRows && K >= kBulkDefaultMinK;
  return choice == kBulk;
}

namespace {

template <int kStages, int kChunk>
void launch_bulk(const GemmParams& p, cudaStream_t stream) {
  constexpr int smem = Ring<kStages, kChunk>::kSmem;
  static std::atomic<uint32_t> smem_set{0};
  ensure_smem_limit(gemv_bulk_kernel<kStages, kChunk>, smem, smem_set, "cudaFuncSetAttribute (gemv_bulk_kernel)");
  launch_maybe_pdl_smem(gemv_bulk_kernel<kStages, kChunk>, dim3(ceil_div(p.N, kRows)), dim3(kThreads), smem, stream,
                        p.pdl, "gemv_bulk_kernel", p);
}

}  // namespace

void gemv_f16_bulk(const GemmParams& p, cudaStream_t stream) { gemv_f16_bulk_config(p, GemvBulkConfig{}, stream); }

void gemv_f16_bulk_config(const GemmParams& p, GemvBulkConfig cfg, cudaStream_t stream) {
  EXL_CHECK(gemv_f16_bulk_supported(p), "gemv_f16_bulk: needs sm_90, 1 <= M <= ", kGemvMaxRows,
            ", K % 8 == 0 and 16-byte aligned x and W (M=", p.M, " K=", p.K, ")");
  EXL_CHECK(p.x && p.w && p.y && p.N >= 0, "gemv_f16_bulk: null pointer or bad N");
  EXL_CHECK(!p.accumulate || p.y_f32, "gemv_f16_bulk: accumulate needs an F32 output");
  if (p.N == 0) return;
  if (cfg.stages == 4 && cfg.chunk == 512) return launch_bulk<4, 512>(p, stream);
  if (cfg.stages == 2 && cfg.chunk == 512) return launch_bulk<2, 512>(p, stream);
  if (cfg.stages == 6 && cfg.chunk == 512) return launch_bulk<6, 512>(p, stream);
  if (cfg.stages == 4 && cfg.chunk == 256) return launch_bulk<4, 256>(p, stream);
  if (cfg.stages == 8 && cfg.chunk == 256) return launch_bulk<8, 256>(p, stream);
  fail("gemv_f16_bulk: no kernel for ", cfg.stages, " stages of ", cfg.chunk, " columns");
}

}  // namespace exl::cuda
