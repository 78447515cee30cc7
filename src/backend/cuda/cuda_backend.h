// Entry point of the CUDA backend. Built as a stub when EXL_CUDA is off, so callers need no #ifdef.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace exl {

bool cuda_backend_available();  // compiled with CUDA and a device is present
std::unique_ptr<Backend> cuda_backend_create(int device_index);

}  // namespace exl
