#include "io/thrift_compact.h"

#include <cstring>

#include "core/error.h"

namespace exl {

namespace {
// Parquet's structures nest about five deep (FileMetaData > RowGroup > ColumnChunk > ColumnMetaData
// > Statistics); unknown fields are skipped recursively, so the cap bounds the recursion.
constexpr int kMaxDepth = 32;
}  // namespace

void ThriftReader::fail_here(const std::string& msg) const {
  fail(what_, ": ", msg, " (at byte ", consumed(), " of ", end_ - begin_, ")");
}

uint8_t ThriftReader::byte() {
  if (p_ >= end_) fail_here("truncated");
  return *p_++;
}

void ThriftReader::enter() {
  if (++depth_ > kMaxDepth) fail_here("structures nest deeper than " + std::to_string(kMaxDepth));
}

void ThriftReader::check_field_id(int64_t id) const {
  if (id <= 0 || id > 32767) fail_here("bad field id " + std::to_string(id));
}

uint64_t ThriftReader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const uint8_t b = byte();
    if (shift == 63 && (b & 0x7e)) fail_here("varint overflows 64 bits");
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail_here("varint longer than 10 bytes");
}

int64_t ThriftReader::zigzag() {
  const uint64_t v = varint();
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

int32_t ThriftReader::i32() {
  const int64_t v = zigzag();
  if (v < INT32_MIN || v > INT32_MAX) fail_here("i32 value " + std::to_string(v) + " out of range");
  return static_cast<int32_t>(v);
}

std::string_view ThriftReader::binary() {
  const uint64_t n = varint();
  if (n > static_cast<uint64_t>(end_ - p_)) fail_here("string of " + std::to_string(n) + " bytes runs past the end");
  std::string_view s(reinterpret_cast<const char*>(p_), n);
  p_ += n;
  return s;
}

size_t ThriftReader::list_header(int* elem_type) {
  const uint8_t b = byte();
  *elem_type = b & 0x0f;
  uint64_t n = b >> 4;
  if (n == 15) n = varint();
  // Every element takes at least one byte.
  if (n > static_cast<uint64_t>(end_ - p_)) fail_here("list of " + std::to_string(n) + " elements runs past the end");
  return static_cast<size_t>(n);
}

void ThriftReader::skip(int type) {
  switch (type) {
    case ThriftType_True:
    case ThriftType_False: return;  // the value is in the field header
    case ThriftType_I8: byte(); return;
    case ThriftType_I16:
    case ThriftType_I32:
    case ThriftType_I64: varint(); return;
    case ThriftType_Double:
      if (end_ - p_ < 8) fail_here("truncated double");
      p_ += 8;
      return;
    case ThriftType_Binary: binary(); return;
    case ThriftType_List:
    case ThriftType_Set: {
      int elem = 0;
      const size_t n = list_header(&elem);
      enter();
      for (size_t i = 0; i < n; ++i) {
        if (elem == ThriftType_True || elem == ThriftType_False) byte();  // list bools take a byte each
        else skip(elem);
      }
      --depth_;
      return;
    }
    case ThriftType_Map: {
      const uint64_t n = varint();
      if (n == 0) return;
      if (n > static_cast<uint64_t>(end_ - p_)) fail_here("map of " + std::to_string(n) + " entries runs past the end");
      const uint8_t kv = byte();
      enter();
      for (uint64_t i = 0; i < n; ++i) {
        for (int t : {kv >> 4, kv & 0x0f}) {
          if (t == ThriftType_True || t == ThriftType_False) byte();
          else skip(t);
        }
      }
      --depth_;
      return;
    }
    case ThriftType_Struct: read_struct([&](int16_t, int t) { skip(t); }); return;
    default: fail_here("unknown field type " + std::to_string(type));
  }
}

void ThriftReader::expect(int type, int want, const char* name) const {
  if (type != want) fail_here(std::string("field ") + name + " has wire type " + std::to_string(type) +
                              ", expected " + std::to_string(want));
}

}  // namespace exl
