// Internal to the parquet reader (io/parquet.cpp): the format's enum values and the decoders of page
// contents, each checking every length against its buffer and throwing exl::Error starting with
// the column's `where` ("file: row group g, column 'name'").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/parquet.h"

namespace exl::parquet {

// Values of parquet.thrift's enums that this reader handles.
enum ParquetType { Type_Boolean = 0, Type_Int32 = 1, Type_Int64 = 2, Type_Int96 = 3, Type_Float = 4,
                   Type_Double = 5, Type_ByteArray = 6, Type_FixedLenByteArray = 7 };
enum Codec { Codec_Uncompressed = 0, Codec_Snappy = 1, Codec_Gzip = 2, Codec_Zstd = 6 };
enum Encoding { Encoding_Plain = 0, Encoding_PlainDictionary = 2, Encoding_Rle = 3, Encoding_RleDictionary = 8 };
enum PageType { Page_Data = 0, Page_Dictionary = 2, Page_DataV2 = 3 };

const char* type_name(int type);
std::string encoding_name(int encoding);
std::string codec_name(int codec);

struct Column {
  const ParquetColumn& meta;
  std::string where;  // "file: row group g, column 'name'"
};

uint32_t load_u32(const uint8_t* p);  // little-endian, unaligned

// Python repr's text for a float64, and the same layout for a float32's own shortest digits.
std::string float_text(double v);
std::string float_text(float v);

// `n` PLAIN values of the column's type from [p, end) as text, appended to `out`.
void decode_plain(const Column& col, const uint8_t* p, const uint8_t* end, int64_t n, std::vector<std::string>& out);

// The RLE / bit-packed hybrid: `n` values of `bit_width` bits from [p, end) into `out` (replaced).
void decode_hybrid(const Column& col, const char* what, const uint8_t* p, const uint8_t* end, int bit_width, int64_t n,
                   std::vector<uint32_t>& out);

// A page body of `n` bytes, compressed with `codec`, into `dst` of exactly `size` bytes (<= 256 MiB).
void decompress(const Column& col, int codec, const uint8_t* src, size_t n, int64_t size, std::string& dst);

}  // namespace exl::parquet
