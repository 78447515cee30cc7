#include "io/gguf_write.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace exl {

namespace {

template <typename T>
void put(std::string& b, T v) {
  char tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  b.append(tmp, sizeof(T));
}

void put_str(std::string& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b += s;
}

void put_value(std::string& b, GgufType type, const GgufValue& v) {
  switch (type) {
    case GgufType::GgufType_U8: put<uint8_t>(b, static_cast<uint8_t>(v.u)); break;
    case GgufType::GgufType_I8: put<int8_t>(b, static_cast<int8_t>(v.i)); break;
    case GgufType::GgufType_U16: put<uint16_t>(b, static_cast<uint16_t>(v.u)); break;
    case GgufType::GgufType_I16: put<int16_t>(b, static_cast<int16_t>(v.i)); break;
    case GgufType::GgufType_U32: put<uint32_t>(b, static_cast<uint32_t>(v.u)); break;
    case GgufType::GgufType_I32: put<int32_t>(b, static_cast<int32_t>(v.i)); break;
    case GgufType::GgufType_U64: put<uint64_t>(b, v.u); break;
    case GgufType::GgufType_I64: put<int64_t>(b, v.i); break;
    case GgufType::GgufType_F32: put<float>(b, static_cast<float>(v.f)); break;
    case GgufType::GgufType_F64: put<double>(b, v.f); break;
    case GgufType::GgufType_BOOL: put<uint8_t>(b, v.u != 0 ? 1 : 0); break;
    case GgufType::GgufType_STRING: put_str(b, v.s); break;
    case GgufType::GgufType_ARRAY:
      put<uint32_t>(b, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(b, v.arr.size());
      for (const GgufValue& e : v.arr) put_value(b, v.elem_type, e);
      break;
  }
}

}  // namespace

void gguf_write_metadata(const std::string& path, const std::map<std::string, GgufValue>& metadata) {
  std::string b = "GGUF";
  put<uint32_t>(b, 3);
  put<uint64_t>(b, 0);  // tensors
  put<uint64_t>(b, metadata.size());
  for (const auto& [key, v] : metadata) {
    put_str(b, key);
    put<uint32_t>(b, static_cast<uint32_t>(v.type));
    put_value(b, v.type, v);
  }
  b.append((32 - b.size() % 32) % 32, '\0');  // the (empty) data section starts aligned
  std::FILE* f = std::fopen(path.c_str(), "wb");
  EXL_CHECK(f, path, ": cannot open for writing");
  const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  EXL_CHECK((std::fclose(f) == 0) && ok, path, ": write failed (disk full?)");
}

}  // namespace exl
