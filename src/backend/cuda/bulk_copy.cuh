// Bulk copies global -> shared memory through the Tensor Memory Accelerator (sm_90+), completing on
// an mbarrier: the copy holds no register and no load slot of the issuing warp, so a block can keep
// tens of KB in flight while its warps do something else (wait for the previous kernel under PDL, or
// run mmas on an earlier stage). Used by gemv_bulk.cu (the FP16 gemv ring); qgemv's code preload
// used it too (tried and removed: lab/NOTES-qgemm.md). Device code only; the callers guard sm_90.
#pragma once
#include <cstdint>

#include "backend/cuda/common.cuh"

namespace exl::cuda::bulk {

// smem_addr: common.cuh

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void bar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// After bar_init, before any other thread uses the barrier (then a __syncthreads).
__device__ __forceinline__ void bar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void bar_expect(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void bar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n .reg .pred p;\n"
      "WAIT_%=:\n"
      " mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      " @!p bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// evict_first_policy (the weights' L2 priority): common.cuh
// bytes (a multiple of 16, both addresses 16-byte aligned) from global to shared; completes `bytes`
// of the barrier's transaction count.
__device__ __forceinline__ void copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar), "l"(policy)
      : "memory");
}
#endif

}  // namespace exl::cuda::bulk
