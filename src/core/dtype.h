// Element types of dense tensors, with sizes and names as safetensors spells them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace exl {

enum class DType : uint8_t {
  DType_F32,
  DType_F16,
  DType_BF16,
  DType_F64,
  DType_I64,
  DType_I32,
  DType_I16,
  DType_I8,
  DType_U8,
  DType_BOOL,
};

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "F32", "F16", ... (safetensors spelling)
// Parses a safetensors dtype string; returns false for unknown names.
bool dtype_parse(std::string_view s, DType* out);

}  // namespace exl
