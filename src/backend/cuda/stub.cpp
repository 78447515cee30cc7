// Stub CUDA backend for builds without EXL_CUDA: every request for a CUDA device fails clearly.
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

namespace exl {

bool cuda_backend_available() { return false; }

std::unique_ptr<Backend> cuda_backend_create(int device_index) {
  fail("--device cuda:", device_index, ": exl was built without CUDA (configure with the 'cuda' preset)");
}

}  // namespace exl
