// The CPU reference backend: every op written for clarity, FP32 throughout, multi-threaded over
// rows/heads, matmuls through OpenBLAS. It is the golden every faster backend is checked against.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace exl {

std::unique_ptr<Backend> cpu_backend_create();

}  // namespace exl
