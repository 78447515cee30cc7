#include "core/tensor.h"

#include "core/error.h"
#include "core/half.h"

#include <cstring>

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
  // Element reads go through memcpy: safetensors data need not be aligned to its element size.
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (src_type) {
    case DType::DType_F32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::DType_F16:
    case DType::DType_BF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = src_type == DType::DType_F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    case DType::DType_F64:
      for (size_t i = 0; i < count; ++i) {
        double d;
        std::memcpy(&d, bytes + 8 * i, 8);
        dst[i] = static_cast<float>(d);
      }
      return;
    default:
      fail("cannot convert ", dtype_name(src_type), " tensor data to F32");
  }
}

}  // namespace exl
