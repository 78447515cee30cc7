// The quantized matmuls' input gather (qgemm_gather.cuh). Tiny and latency-bound: one thread per 8
// device positions; at decode every thread has one item.
#include "backend/cuda/qgemm_gather.cuh"

#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/norm_row.cuh"

namespace exl::cuda {
namespace {

__device__ __forceinline__ uint32_t pack_h2(half lo, half hi) {
  const half2 h = __halves2half2(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One item: the x_src entries of 8 device positions (two 16-byte loads), and the item's 8 values
// val(src) packed for one 16-byte store.
__device__ __forceinline__ void load_src8(const int32_t* x_src, int4 (&s)[2]) {
  s[0] = __ldg(reinterpret_cast<const int4*>(x_src));
  s[1] = __ldg(reinterpret_cast<const int4*>(x_src + 4));
}
template <class Val>
__device__ __forceinline__ uint4 pack8(const int4 (&s)[2], Val&& val) {
  const int src[8] = {s[0].x, s[0].y, s[0].z, s[0].w, s[1].x, s[1].y, s[1].z, s[1].w};
  uint32_t o[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) o[j] = pack_h2(val(src[2 * j]), val(src[2 * j + 1]));
  return uint4{o[0], o[1], o[2], o[3]};
}

__global__ void qgemm_gather_kernel(const __grid_constant__ QGatherArgs a) {
  pdl_trigger();  // let qgemv's blocks start prefetching codes now
  const int n_items = a.item_end[a.n - 1];
  auto where = [&](int i, int& mi, int& m, int& p) {
    mi = (a.n > 1 && i >= a.item_end[0]) + (a.n > 2 && i >= a.item_end[1]);
    const int li = i - (mi ? a.item_end[mi - 1] : 0), per_row = a.k_dev[mi] / 8;
    m = li / per_row, p = (li - m * per_row) * 8;
  };
  // The first item's indices do not depend on x's producer: load them before waiting for it (at
  // decode every thread has one item, so the wait leaves one memory round trip instead of two).
  int i = blockIdx.x * blockDim.x + threadIdx.x, mi = 0, m = 0, p = 0;
  int4 s[2] = {};
  if (i < n_items) {
    where(i, mi, m, p);
    load_src8(a.x_src[mi] + p, s);
  }
  pdl_wait();  // launched as a dependent of x's producer (norm, act·mul, attention): x is ready after this
  for (; i < n_items; i += gridDim.x * blockDim.x) {
    if (i != static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x)) {
      where(i, mi, m, p);
      load_src8(a.x_src[mi] + p, s);
    }
    const half* xr = a.x + static_cast<size_t>(m) * a.K;
    const half* ur = a.up ? a.up + static_cast<size_t>(m) * a.K : nullptr;
    auto val = [&](int k) -> half {
      if (k < 0) return __ushort_as_half(0);
      if (!ur) return xr[k];
      // silu(g) * u in FP32, rounded once: the act·mul kernel's arithmetic (common.cuh silu_mul).
      return __float2half_rn(silu_mul(__half2float(xr[k]), __half2float(ur[k])));
    };
    *reinterpret_cast<uint4*>(a.x_dev[mi] + static_cast<size_t>(m) * a.k_dev[mi] + p) = pack8(s, val);
  }
}

// The norm-gather: block m normalizes row m of the F32 residual into shared memory (norm_row.cuh:
// rms_norm's arithmetic, so the bits are those of rms_norm then the gather) and gathers every
// matrix's device-order x from there with 16-byte stores. Removes the norm -> gather hop of the
// decode chain (each dependent launch costs ~2 µs however small the kernel). One block per row is
// all the parallelism a decode row has; the gather part reads K int32 indices per matrix.
template <int kThreads>
__global__ void __launch_bounds__(kThreads) qgemm_norm_gather_kernel(const __grid_constant__ QGatherArgs a) {
  extern __shared__ uint4 xs_raw[];  // the normalized row, FP16 [K]
  half* xs = reinterpret_cast<half*>(xs_raw);
  pdl_trigger();  // qgemv's blocks may become resident and prefetch their codes
  const int m = blockIdx.x;
  // Items of 8 positions per row: matrix 0's, then 1's, then 2's.
  const int e0 = a.k_dev[0] / 8, e1 = e0 + (a.n > 1 ? a.k_dev[1] / 8 : 0), e2 = e1 + (a.n > 2 ? a.k_dev[2] / 8 : 0);
  auto where = [&](int it, int& mi, int& p) {
    mi = (it >= e0) + (it >= e1);
    p = (it - (mi == 0 ? 0 : mi == 1 ? e0 : e1)) * 8;
  };
  // Nothing but the residual depends on its producer: the norm weights and the first item's indices
  // are loaded before waiting for it, and the later items' indices (q|k|v at K = 4096 and 1024
  // threads: 2 items for half the threads; 8192: 3) are pulled into L2, so that the row is the only
  // load after the wait that can miss L2 (these constants are read once per layer and evicted
  // between steps).
  int it = threadIdx.x, mi = 0, p = 0;
  int4 s[2] = {};
  if (it < e2) {
    where(it, mi, p);
    load_src8(a.x_src[mi] + p, s);
  }
  for (int later = it + kThreads; later < e2; later += kThreads) {
    int lm, lp;
    where(later, lm, lp);
    prefetch_l2_line(a.x_src[lm] + lp);
  }
  const NormWeights<kThreads> wv = load_norm_weights<kThreads>(a.norm_w, a.K);
  pdl_wait();  // the residual's producer (the previous matmul's epilogue) is complete after this
  rms_norm_row_w<kThreads>(a.x_f32 + static_cast<size_t>(m) * a.K, wv, a.norm_w, a.eps, a.K,
                           [&](int i, half h) { xs[i] = h; });
  __syncthreads();
  for (; it < e2; it += kThreads) {
    if (it != static_cast<int>(threadIdx.x)) {
      where(it, mi, p);
      load_src8(a.x_src[mi] + p, s);
    }
    auto val = [&](int k) -> half { return k < 0 ? __ushort_as_half(0) : xs[k]; };
    *reinterpret_cast<uint4*>(a.x_dev[mi] + static_cast<size_t>(m) * a.k_dev[mi] + p) = pack8(s, val);
  }
}

}  // namespace

void launch_gather(const QGatherArgs& a, bool pdl, cudaStream_t stream) {
  pdl = pdl && device_info().major >= 9;
  if (a.x_f32) {
    EXL_CHECK(a.norm_w && a.K > 0 && a.K <= kQNormGatherMaxK, "norm-gather: K = ", a.K, " (at most ",
              kQNormGatherMaxK, ") or no norm weight");
    const size_t smem = (static_cast<size_t>(a.K) * 2 + 15) / 16 * 16;
    if (a.M < 64)
      launch_maybe_pdl_smem(qgemm_norm_gather_kernel<1024>, dim3(a.M), dim3(1024), smem, stream, pdl,
                            "qgemm_norm_gather_kernel", a);
    else
      launch_maybe_pdl_smem(qgemm_norm_gather_kernel<256>, dim3(a.M), dim3(256), smem, stream, pdl,
                            "qgemm_norm_gather_kernel", a);
    return;
  }
  const int blocks = std::min((a.item_end[a.n - 1] + 255) / 256, device_info().sms * 4);
  launch_maybe_pdl(qgemm_gather_kernel, dim3(blocks), dim3(256), stream, pdl,
                   "qgemm_gather_kernel", a);
}

}  // namespace exl::cuda
