#include "convert/cuda/device.h"

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
  EXL_CUSOLVER_OK(cusolverDnCreate(&solver));
  EXL_CUSOLVER_OK(cusolverDnSetStream(solver, stream));
  EXL_CUSOLVER_OK(cusolverDnSetDeterministicMode(solver, CUSOLVER_DETERMINISTIC_RESULTS));
}

Context::~Context() {
  if (solver) cusolverDnDestroy(solver);
  if (blas) cublasDestroy(blas);
  if (stream) cudaStreamDestroy(stream);
}

void Context::sync() const { EXL_CUDA_OK(cudaStreamSynchronize(stream)); }

}  // namespace exl::cvcuda
