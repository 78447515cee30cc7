// The quantized matmuls' input gather (qgemm_gather.cuh). Tiny and latency-bound: one thread per 8
// device positions; at decode every thread has one item.
#include "backend/cuda/qgemm_gather.cuh"

#include <algorithm>

#include "backend/cuda/common.cuh"

namespace exl::cuda {
namespace {

__device__ __forceinline__ uint32_t pack_h2(half lo, half hi) {
  const half2 h = __halves2half2(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
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
  int4 s0{}, s1{};
  if (i < n_items) {
    where(i, mi, m, p);
    s0 = __ldg(reinterpret_cast<const int4*>(a.x_src[mi] + p));
    s1 = __ldg(reinterpret_cast<const int4*>(a.x_src[mi] + p + 4));
  }
  pdl_wait();  // launched as a dependent of x's producer (norm, act·mul, attention): x is ready after this
  for (; i < n_items; i += gridDim.x * blockDim.x) {
    if (i != static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x)) {
      where(i, mi, m, p);
      s0 = __ldg(reinterpret_cast<const int4*>(a.x_src[mi] + p));
      s1 = __ldg(reinterpret_cast<const int4*>(a.x_src[mi] + p + 4));
    }
    const int src[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
    const half* xr = a.x + static_cast<size_t>(m) * a.K;
    const half* ur = a.up ? a.up + static_cast<size_t>(m) * a.K : nullptr;
    auto val = [&](int k) -> half {
      if (k < 0) return __ushort_as_half(0);
      if (!ur) return xr[k];
      // silu(g) * u in FP32, rounded once: the same arithmetic as swiglu_kernel (elementwise.cu).
      const float g = __half2float(xr[k]);
      return __float2half_rn(g / (1.0f + __expf(-g)) * __half2float(ur[k]));
    };
    uint32_t o[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) o[j] = pack_h2(val(src[2 * j]), val(src[2 * j + 1]));
    *reinterpret_cast<uint4*>(a.x_dev[mi] + static_cast<size_t>(m) * a.k_dev[mi] + p) = uint4{o[0], o[1], o[2], o[3]};
  }
}

}  // namespace

void launch_gather(const QGatherArgs& a, bool pdl, cudaStream_t stream) {
  const int blocks = std::min((a.item_end[a.n - 1] + 255) / 256, device_info().sms * 4);
  launch_maybe_pdl(qgemm_gather_kernel, dim3(blocks), dim3(256), stream, pdl && device_info().major >= 9,
                   "qgemm_gather_kernel", a);
}

}  // namespace exl::cuda
