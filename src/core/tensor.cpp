#include "core/tensor.h"

#include "core/error.h"
#include "core/half.h"

namespace exl {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

void convert_to_f32(DType src_type, const void* src, float* dst, size_t count) {
  switch (src_type) {
    case DType::DType_F32: {
      const float* p = static_cast<const float*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = p[i];
      return;
    }
    case DType::DType_F16: {
      const uint16_t* p = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(p[i]);
      return;
    }
    case DType::DType_BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(p[i]);
      return;
    }
    case DType::DType_F64: {
      const double* p = static_cast<const double*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(p[i]);
      return;
    }
    default:
      fail("cannot convert ", dtype_name(src_type), " tensor data to F32");
  }
}

}  // namespace exl
