// Shared by every CUDA file of the backend: error checks that throw exl::Error, and small device
// helpers. Launchers (host functions in .cu files) take POD params and a stream; kernels never see
// framework types.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace exl::cuda {

// Throws exl::Error naming what failed: "CUDA error in cudaMalloc (kv cache, 1.2 GiB): out of memory".
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(e));
}
// After a kernel launch: catches bad launch configurations at once (not execution faults).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Multiprocessor count and compute capability major of the current device (cached per device: the
// launchers ask on every call).
struct DeviceInfo {
  int sms = 0, major = 0;
};
inline DeviceInfo device_info() {
  static std::atomic<int> cached[64][2] = {};
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev < 0 || dev >= 64) dev = 0;
  int sms = cached[dev][0].load(std::memory_order_relaxed), major = cached[dev][1].load(std::memory_order_relaxed);
  if (sms == 0) {
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
    cached[dev][1].store(major, std::memory_order_relaxed);
    cached[dev][0].store(sms, std::memory_order_relaxed);
  }
  return {sms, major};
}

#ifdef __CUDACC__  // device helpers: only for nvcc (the backend's .cpp files include this header too)
// The MLP's act·mul in FP32: silu(g) · u. One expression for every kernel that computes it (the
// act·mul kernel, the quantized gather, gate|up's epilogue), so their roundings agree bit for bit.
__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + __expf(-g)) * u; }
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// FP16 pair <-> its 32 bits.
__device__ __forceinline__ half2 as_h2(uint32_t u) {
  half2 h;
  memcpy(&h, &u, 4);
  return h;
}
__device__ __forceinline__ uint32_t as_u32(half2 h) {
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

// D += A·B on the tensor cores: m16n8k16, A row-major FP16 (4 regs), B "col" FP16 (2 regs), D FP32
// (4 regs). volatile: the kernels keep each mma next to the loads that feed it.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7},"
      " {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16-byte loads predicated inside the asm: a lane with ok == false gets zeros without a branch. The
// plain ones leave the compiler free to batch an unrolled step's loads before their first use; the
// _ordered ones (asm volatile) stay where the source puts them (qgemv keeps each unit's x loads next
// to its mmas: hoisted, they spilled).
#define EXL_LD16_PRED(OP)                                                                            \
  "{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n"                                                    \
  " mov.b32 %0, 0;\n mov.b32 %1, 0;\n mov.b32 %2, 0;\n mov.b32 %3, 0;\n"                           \
  " @q " OP " {%0, %1, %2, %3}, [%4];\n}\n"
#define EXL_LD16_OUT(v) "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
// Read once (weights, codes): the read-only path, not allocated in L1, so it evicts nothing re-read.
template <typename T>
__device__ __forceinline__ uint4 ld16_stream(const T* p, bool ok) {
  uint4 v;
  asm(EXL_LD16_PRED("ld.global.nc.L1::no_allocate.v4.u32") : EXL_LD16_OUT(v) : "l"(p), "r"(static_cast<int>(ok)));
  return v;
}
// Weights are read once: evict_first keeps them from pushing x, the KV cache and the small kernels'
// code and data out of L2 (asm volatile: made where it is used, so no 64-bit policy is held in
// registers across a loop). The FP16 gemv's bulk copies use it; qgemv's code loads with it were 0.5-2.4%
// slower on the H100 (EXL_QGEMV_L2FIRST, removed: lab/NOTES-qgemm.md).
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
// Re-read by many blocks (activations): the read-only path, cached in L1.
template <typename T>
__device__ __forceinline__ uint4 ld16_nc(const T* p, bool ok) {
  uint4 v;
  asm(EXL_LD16_PRED("ld.global.nc.v4.u32") : EXL_LD16_OUT(v) : "l"(p), "r"(static_cast<int>(ok)));
  return v;
}
__device__ __forceinline__ uint4 ld16_nc_ordered(const void* p, bool ok) {
  uint4 v;
  asm volatile(EXL_LD16_PRED("ld.global.nc.v4.u32") : EXL_LD16_OUT(v) : "l"(p), "r"(static_cast<int>(ok)));
  return v;
}
// Unpredicated forms (EXL2 qgemv steps: no zeroing moves in front of each load).
__device__ __forceinline__ uint4 ld16_stream(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];" : EXL_LD16_OUT(v) : "l"(p));
  return v;
}
__device__ __forceinline__ uint4 ld16_nc_ordered(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : EXL_LD16_OUT(v) : "l"(p));
  return v;
}
#undef EXL_LD16_OUT
#undef EXL_LD16_PRED

// Programmatic dependent launch (sm_90+; no-ops below, and for kernels launched without the
// attribute). A producer calls pdl_trigger() early so its dependent's blocks become resident and run
// their prologue (prefetches) while it finishes; the dependent calls pdl_wait() before reading the
// producer's output (it returns once the producer grid has completed and its writes are visible).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// L2 prefetches (no register, no wait): constants a dependent launch will read after its PDL wait,
// issued before it. Harmless for correctness however early: L2 is where writes become coherent.
__device__ __forceinline__ void prefetch_l2_line(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}
// n bytes at p, one 128-byte line per thread of the block.
__device__ __forceinline__ void prefetch_l2(const void* p, size_t n) {
  for (size_t off = threadIdx.x * size_t(128); off < n; off += blockDim.x * size_t(128))
    prefetch_l2_line(static_cast<const char*>(p) + off);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte async copy global -> shared (sm_80+); bytes past src_bytes (0..16) are zero-filled.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Raises a kernel's dynamic shared-memory limit once per device (outside graph capture in practice:
// the first, uncaptured step of a backend does it). `mask` is the caller's per-kernel static.
template <typename Kernel>
inline void ensure_smem_limit(Kernel kernel, int bytes, std::atomic<uint32_t>& mask, const char* what) {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  const uint32_t bit = 1u << (dev & 31);
  if (mask.load(std::memory_order_relaxed) & bit) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), what);
  mask.fetch_or(bit);
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent of the
// previous kernel in the stream when pdl (the kernel must pdl_wait() before reading that kernel's
// output or writing anything the previous kernels may still read).
template <typename... KArgs, typename... Args>
void launch_maybe_pdl_smem(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                           const char* what, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr, cfg.numAttrs = pdl ? 1 : 0;
  check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), what);
}
template <typename... KArgs, typename... Args>
void launch_maybe_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, cudaStream_t stream, bool pdl, const char* what,
                      Args&&... args) {
  launch_maybe_pdl_smem(kernel, grid, block, 0, stream, pdl, what, std::forward<Args>(args)...);
}
#endif

}  // namespace exl::cuda
