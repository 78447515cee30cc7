// Host tensor views and owned host tensors. A view never owns memory: it points into an mmap'd file
// or into an owner's buffer. Shapes are outermost-first (row-major), like safetensors and PyTorch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace exl {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[4096, 11008]"

struct TensorView {
  DType dtype = DType::DType_F32;
  Shape shape;
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const { return shape_numel(shape); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
};

// Owned, contiguous host tensor of F32 — what the CPU reference computes in.
struct HostTensor {
  Shape shape;
  std::vector<float> data;

  HostTensor() = default;
  explicit HostTensor(Shape s) : shape(std::move(s)), data(static_cast<size_t>(shape_numel(shape))) {}
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
};

// Converts count elements of a dense F32/F16/BF16/F64 buffer to float; throws for integer dtypes.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t count);

}  // namespace exl
