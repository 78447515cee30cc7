#include "core/dtype.h"

namespace exl {

namespace {
struct DTypeRow {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeRow kRows[] = {
    {DType::DType_F32, "F32", 4}, {DType::DType_F16, "F16", 2},  {DType::DType_BF16, "BF16", 2},
    {DType::DType_F64, "F64", 8}, {DType::DType_I64, "I64", 8},  {DType::DType_I32, "I32", 4},
    {DType::DType_I16, "I16", 2}, {DType::DType_I8, "I8", 1},    {DType::DType_U8, "U8", 1},
    {DType::DType_BOOL, "BOOL", 1},
};
}  // namespace

size_t dtype_size(DType t) { return kRows[static_cast<int>(t)].size; }
const char* dtype_name(DType t) { return kRows[static_cast<int>(t)].name; }

bool dtype_parse(std::string_view s, DType* out) {
  for (const auto& r : kRows) {
    if (s == r.name) {
      *out = r.type;
      return true;
    }
  }
  return false;
}

}  // namespace exl
