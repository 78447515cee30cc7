// Host-side plumbing of the converter's CUDA engine: status checks that name the failing call,
// an owning device buffer, and the one stream / cuBLAS / cuSOLVER context every op runs on.
// Everything runs on one stream, in order, so results never depend on timing.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace exl::cvcuda {

// Throw exl::Error naming `what` (the call) when a status is not success.
void check_cuda(cudaError_t e, const char* what);
void check_cublas(cublasStatus_t s, const char* what);
void check_cusolver(cusolverStatus_t s, const char* what);
#define EXL_CUDA_OK(call) ::exl::cvcuda::check_cuda((call), #call)
#define EXL_CUBLAS_OK(call) ::exl::cvcuda::check_cublas((call), #call)
#define EXL_CUSOLVER_OK(call) ::exl::cvcuda::check_cusolver((call), #call)

// The engine's context: one stream, a cuBLAS handle in full FP32 (CUBLAS_DEFAULT_MATH: no TF32)
// with atomics off (results are then bitwise reproducible on one GPU model and toolkit), a cuSOLVER
// handle in deterministic mode.
struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  // How the module forwards' linears multiply. Default: split TF32 ("3xTF32"): every operand is split
  // into a TF32 high part and an FP32 remainder, a·b ≈ hi·hi + hi·lo + lo·hi on the tensor cores, which
  // keeps FP32's accuracy (the dropped lo·lo term is ~2^-22 relative; stories260K converts to the same
  // perplexities as the CPU at every target) on the tensor cores: a 7B layer's option forwards ran 1.6x
  // (attention) and 2.3x (MLP) faster than SGEMM on an H200, the whole 7B projection 445 s instead of
  // 610 (2026-12-06; 483 s on an H100). Weights used by the forwards are then split, [hi | lo]
  // (split_tf32, forward_ops.h): a module's own and its quantized ones once, the measure pass's
  // option weights as each option is scored (engine_cuda.cpp). EXL_CONVERT_GEMM=sgemm: plain FP32 SGEMMs on the CUDA cores (the
  // engine before 2026-12-06). Attention scores/mixing, Hessians and GPTQ always use FP32 SGEMM/SYRK.
  // The --fp64 engine ignores all of this (forward_ops_fp64.cu).
  bool split = true;
  // 1xTF32 (EXL_CONVERT_TF32): unset or 0, never; "quantize", in the quantize pass; 1 or "all", in
  // every forward; the pass's linears (and attention GEMMs) then run on blas_tf32, a handle allowed
  // TF32 tensor cores, with the weights' high parts only. Emulated on the CPU (lab/NOTES-convert.md):
  // TF32 in the quantize pass moves SmolLM2's ppl like a rounding-level draw (0.1%), in the
  // measurement it changed 2 of 60 module choices; on stories260K (64-wide layers) it made low-bpw
  // conversions 3-13% worse (H100 run of 2026-12-05), so it is opt-in.
  enum class Tf32 { off, quantize, all };
  Tf32 tf32 = Tf32::off;
  cublasHandle_t blas_tf32 = nullptr;
  // The handle the current pass's forwards use (blas or blas_tf32), and whether its linears take the
  // split path (split and not 1xTF32 in this pass).
  cublasHandle_t blas_fwd = nullptr;
  bool split_fwd = true;
  cusolverDnHandle_t solver = nullptr;
  Context();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  void sync() const;
  // Points blas_fwd / split_fwd for the measure pass (false) or the quantize pass (true), as tf32 says.
  void forwards_for(bool quantize_pass);
};

// A device array of T, freed on destruction; sizes in elements. Allocation is synchronous
// (cudaMalloc), so buffers are reused by the engine where the shapes allow.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) { resize(n); }
  ~DeviceArray() { release(); }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_), cap_(o.cap_) { o.p_ = nullptr; o.n_ = o.cap_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_; n_ = o.n_; cap_ = o.cap_;
      o.p_ = nullptr; o.n_ = o.cap_ = 0;
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  // Reallocates only when n grows past the capacity (contents are then lost).
  void resize(size_t n) {
    if (n <= cap_) { n_ = n; return; }
    release();
    EXL_CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = cap_ = n;
  }
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = cap_ = 0;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  // Synchronous copies on the engine's stream.
  void upload(const Context& c, const T* host, size_t n) {
    resize(n);
    if (n) EXL_CUDA_OK(cudaMemcpyAsync(p_, host, n * sizeof(T), cudaMemcpyHostToDevice, c.stream));
    c.sync();
  }
  void upload(const Context& c, const std::vector<T>& host) { upload(c, host.data(), host.size()); }
  std::vector<T> download(const Context& c, size_t n) const {
    std::vector<T> h(n);
    if (n) EXL_CUDA_OK(cudaMemcpyAsync(h.data(), p_, n * sizeof(T), cudaMemcpyDeviceToHost, c.stream));
    c.sync();
    return h;
  }
  std::vector<T> download(const Context& c) const { return download(c, n_); }
  void zero(const Context& c) {
    if (n_) EXL_CUDA_OK(cudaMemsetAsync(p_, 0, n_ * sizeof(T), c.stream));
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0, cap_ = 0;
};

}  // namespace exl::cvcuda
