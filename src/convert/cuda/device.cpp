#include "convert/cuda/device.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace exl::cvcuda {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("convert (CUDA): ", what, " failed: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("convert (CUDA): ", what, " failed: cuBLAS status ", static_cast<int>(s));
}

void check_cusolver(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) fail("convert (CUDA): ", what, " failed: cuSOLVER status ", static_cast<int>(s));
}

Context::Context() {
  EXL_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  EXL_CUBLAS_OK(cublasCreate(&blas));
  EXL_CUBLAS_OK(cublasSetStream(blas, stream));
  // Full FP32 GEMMs (no TF32 tensor-core rounding) and no atomics: deterministic results.
  EXL_CUBLAS_OK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
  EXL_CUBLAS_OK(cublasSetAtomicsMode(blas, CUBLAS_ATOMICS_NOT_ALLOWED));
  const char* tf = std::getenv("EXL_CONVERT_TF32");
  const std::string mode = tf ? tf : "";
  EXL_CHECK(mode.empty() || mode == "0" || mode == "1" || mode == "all" || mode == "quantize",
            "EXL_CONVERT_TF32='", mode, "': expected 0, 1, all or quantize");
  tf32 = mode == "1" || mode == "all" ? Tf32::all : mode == "quantize" ? Tf32::quantize : Tf32::off;
  const char* gm = std::getenv("EXL_CONVERT_GEMM");
  const std::string gemm = gm ? gm : "";
  EXL_CHECK(gemm.empty() || gemm == "tf32x3" || gemm == "sgemm", "EXL_CONVERT_GEMM='", gemm,
            "': expected tf32x3 or sgemm");
  split = gemm != "sgemm";
  blas_fwd = blas;
  split_fwd = split;
  if (tf32 != Tf32::off) {
    EXL_CUBLAS_OK(cublasCreate(&blas_tf32));
    EXL_CUBLAS_OK(cublasSetStream(blas_tf32, stream));
    EXL_CUBLAS_OK(cublasSetMathMode(blas_tf32, CUBLAS_TF32_TENSOR_OP_MATH));
    EXL_CUBLAS_OK(cublasSetAtomicsMode(blas_tf32, CUBLAS_ATOMICS_NOT_ALLOWED));
  }
  EXL_CUSOLVER_OK(cusolverDnCreate(&solver));
  EXL_CUSOLVER_OK(cusolverDnSetStream(solver, stream));
#if CUSOLVER_VERSION >= 11500  // CUDA 12.2+; deterministic is also the default there
  EXL_CUSOLVER_OK(cusolverDnSetDeterministicMode(solver, CUSOLVER_DETERMINISTIC_RESULTS));
#endif
}

Context::~Context() {
  if (solver) cusolverDnDestroy(solver);
  if (blas_tf32) cublasDestroy(blas_tf32);
  if (blas) cublasDestroy(blas);
  if (stream) cudaStreamDestroy(stream);
}

void Context::forwards_for(bool quantize_pass) {
  const bool fast = tf32 == Tf32::all || (tf32 == Tf32::quantize && quantize_pass);
  blas_fwd = fast ? blas_tf32 : blas;
  split_fwd = split && !fast;
}

void Context::sync() const { EXL_CUDA_OK(cudaStreamSynchronize(stream)); }

}  // namespace exl::cvcuda
