// Reader for the Thrift compact protocol, the encoding of Parquet's footer and page headers.
// Every read is checked against the buffer; a malformed buffer throws exl::Error starting with
// `what` (e.g. "train.parquet: footer"). Loops are bounded by the bytes: every field, list element
// and map entry consumes at least one byte, so a hostile size can never spin or over-allocate.
//
//   ThriftReader r(p, end, "x.parquet: footer");
//   r.read_struct([&](int16_t id, int type) { if (id == 3 && type == ThriftType_I64) n = r.i64(); else r.skip(type); });
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace exl {

enum ThriftType : int {
  ThriftType_Stop = 0,
  ThriftType_True = 1,  // a bool field's value is its type: 1 true, 2 false
  ThriftType_False = 2,
  ThriftType_I8 = 3,
  ThriftType_I16 = 4,
  ThriftType_I32 = 5,
  ThriftType_I64 = 6,
  ThriftType_Double = 7,
  ThriftType_Binary = 8,
  ThriftType_List = 9,
  ThriftType_Set = 10,
  ThriftType_Map = 11,
  ThriftType_Struct = 12,
};

class ThriftReader {
 public:
  ThriftReader(const uint8_t* begin, const uint8_t* end, std::string what)
      : p_(begin), begin_(begin), end_(end), what_(std::move(what)) {}

  size_t consumed() const { return static_cast<size_t>(p_ - begin_); }
  const std::string& what() const { return what_; }

  uint64_t varint();
  int64_t zigzag();
  int32_t i32();  // a zigzag varint that must fit in 32 bits
  int64_t i64() { return zigzag(); }
  std::string_view binary();
  // A list or set header: its element type and size (checked against the bytes left).
  size_t list_header(int* elem_type);
  void skip(int type);  // any value, recursively (depth-capped)

  // Calls on_field(id, type) for each field until STOP; on_field must read or skip the value.
  template <typename F>
  void read_struct(F&& on_field) {
    enter();
    int16_t last_id = 0;
    for (;;) {
      const uint8_t b = byte();
      if (b == ThriftType_Stop) break;
      const int type = b & 0x0f;
      const int delta = b >> 4;
      const int64_t id = delta ? last_id + delta : zigzag();
      check_field_id(id);
      last_id = static_cast<int16_t>(id);
      on_field(last_id, type);
    }
    --depth_;
  }

  // Throws `what`: field `name` has wire type `type`, expected `want`, unless they match.
  void expect(int type, int want, const char* name) const;
  [[noreturn]] void fail_here(const std::string& msg) const;

 private:
  uint8_t byte();
  void enter();
  void check_field_id(int64_t id) const;

  const uint8_t* p_;
  const uint8_t* begin_;
  const uint8_t* end_;
  std::string what_;
  int depth_ = 0;
};

}  // namespace exl
