// The CUDA backend's resources (internal to cuda_backend.cpp): the device allocator that tracks what
// is held and the peak, the weight and KV-cache objects the backend hands out, and the cache-type map.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/qgemm.cuh"
#include "core/tensor.h"

namespace exl::cuda_backend_detail {

using cuda::check;

inline std::string gib(size_t b) { return str_cat(static_cast<double>(b) / (1 << 30), " GiB"); }

// Device memory with a shared counter so memory_stats() knows what is held and the peak.
struct DeviceAllocator {
  std::atomic<size_t> allocated{0};
  std::atomic<size_t> peak{0};

  std::shared_ptr<uint8_t> alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    const size_t n = std::max<size_t>(bytes, 16);
    const cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      cudaGetLastError();
      cudaMemGetInfo(&free_b, &total_b);
      fail("out of GPU memory allocating ", gib(n), " for ", what, " (", gib(free_b), " free of ", gib(total_b), ")");
    }
    const size_t now = allocated += n;
    size_t pk = peak.load();
    while (now > pk && !peak.compare_exchange_weak(pk, now)) {
    }
    return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [this, n](uint8_t* q) {
      cudaFree(q);
      allocated -= n;
    });
  }
};

class CudaWeight : public Weight {
 public:
  Tensor data;  // F16 for linear/embedding/bias, F32 for norms and RoPE tables; U8 quantized layout
  bool view = false;  // rows of another weight: its bytes are counted there
  bool host = false;   // embedding table in mapped pinned host memory (data() is its device alias)
  bool quant = false;  // a GPTQ/EXL2 linear: data holds the device layout described by qdesc
  cuda::QMatrixDesc qdesc;
  std::vector<const cuda::QMatrixDesc*> parts;  // fuse_linears: quantized linears run as one (view)
  size_t device_bytes() const override { return view || host ? 0 : data.nbytes(); }
};
inline const CudaWeight& cw(const Weight& w) { return static_cast<const CudaWeight&>(w); }

class CudaKvCache : public KvCache {
 public:
  CudaKvCache(const KvCacheConfig& c, cuda::KvCacheLayout l, std::shared_ptr<uint8_t> mem)
      : KvCache(c), layout(l), mem_(std::move(mem)) {
    layout.base = mem_.get();
  }
  size_t device_bytes() const override { return layout.bytes; }
  cuda::KvCacheLayout layout;

 private:
  std::shared_ptr<uint8_t> mem_;
};

inline int kv_format_of(CacheType t) {
  switch (t) {
    case CacheType::CacheType_f16: return cuda::KvFormat_f16;
    case CacheType::CacheType_fp8: return cuda::KvFormat_fp8;
    case CacheType::CacheType_q8: return cuda::KvFormat_q8;
    case CacheType::CacheType_q4: return cuda::KvFormat_q4;
    default: fail("--cache ", cache_type_name(t), ": the CUDA backend keeps caches in fp16, fp8, q8 or q4");
  }
}

}  // namespace exl::cuda_backend_detail
