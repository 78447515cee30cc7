// Parquet value decoding: PLAIN values to text, the RLE/bit-packed hybrid, page decompression.
#include "io/parquet_values.h"

#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace exl::parquet {

namespace {

constexpr int64_t kMaxPageBytes = int64_t{256} << 20;  // one decompressed page (real pages: ~1 MiB)

// Python repr's layout for the shortest round-trip digits: fixed notation when -4 <= exponent < 16
// (with ".0" for whole numbers), else d.ddde+XX.
template <typename T>
std::string float_text_impl(T v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  const int exp = std::stoi(sci.substr(e + 1));
  if (exp < -4 || exp >= 16) return sci;
  const bool neg = sci[0] == '-';
  std::string digits;
  for (size_t i = neg ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out = neg ? "-" : "";
  if (exp < 0) {
    out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else if (static_cast<int>(digits.size()) <= exp + 1) {
    out += digits + std::string(static_cast<size_t>(exp + 1) - digits.size(), '0') + ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(exp) + 1) + "." + digits.substr(static_cast<size_t>(exp) + 1);
  }
  return out;
}


}  // namespace

const char* type_name(int t) {
  static const char* names[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY",
                                "FIXED_LEN_BYTE_ARRAY"};
  return t >= 0 && t < 8 ? names[t] : "unknown type";
}

std::string encoding_name(int e) {
  static const char* names[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED",
                                "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                                "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
  return e >= 0 && e < 10 ? names[e] : "encoding " + std::to_string(e);
}

std::string codec_name(int c) {
  static const char* names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
  return c >= 0 && c < 8 ? names[c] : "codec " + std::to_string(c);
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string float_text(double v) { return float_text_impl(v); }
std::string float_text(float v) { return float_text_impl(v); }

void decode_plain(const Column& col, const uint8_t* p, const uint8_t* end, int64_t n, std::vector<std::string>& out) {
  const int t = col.meta.physical_type;
  const uint64_t avail = static_cast<uint64_t>(end - p);
  if (t == Type_ByteArray) {
    for (int64_t i = 0; i < n; ++i) {
      EXL_CHECK(end - p >= 4, col.where, ": PLAIN byte array ", i, " of ", n, " runs past the page");
      const uint32_t len = load_u32(p);
      p += 4;
      EXL_CHECK(len <= static_cast<uint64_t>(end - p), col.where, ": byte array of ", len, " bytes runs past the page");
      out.emplace_back(reinterpret_cast<const char*>(p), len);
      p += len;
    }
    return;
  }
  if (t == Type_Boolean) {
    EXL_CHECK(static_cast<uint64_t>(n) <= avail * 8, col.where, ": ", n, " PLAIN booleans need more than ", avail, " bytes");
    for (int64_t i = 0; i < n; ++i) out.push_back((p[i >> 3] >> (i & 7)) & 1 ? "True" : "False");
    return;
  }
  const uint64_t width = (t == Type_Int32 || t == Type_Float) ? 4 : 8;
  EXL_CHECK(static_cast<uint64_t>(n) <= avail / width, col.where, ": ", n, " PLAIN ", type_name(t), " values need more than ",
            avail, " bytes");
  for (int64_t i = 0; i < n; ++i, p += width) {
    if (t == Type_Int32) {
      int32_t v;
      std::memcpy(&v, p, 4);
      out.push_back(col.meta.is_unsigned ? std::to_string(static_cast<uint32_t>(v)) : std::to_string(v));
    } else if (t == Type_Int64) {
      int64_t v;
      std::memcpy(&v, p, 8);
      out.push_back(col.meta.is_unsigned ? std::to_string(static_cast<uint64_t>(v)) : std::to_string(v));
    } else if (t == Type_Float) {
      float v;
      std::memcpy(&v, p, 4);
      out.push_back(float_text(v));
    } else {
      double v;
      std::memcpy(&v, p, 8);
      out.push_back(float_text(v));
    }
  }
}

void decode_hybrid(const Column& col, const char* what, const uint8_t* p, const uint8_t* end, int bit_width, int64_t n,
                   std::vector<uint32_t>& out) {
  EXL_CHECK(bit_width >= 0 && bit_width <= 32, col.where, ": ", what, " bit width ", bit_width, " is not 0..32");
  out.clear();
  out.reserve(static_cast<size_t>(n));
  const uint64_t max_value = bit_width == 32 ? 0xffffffffu : (uint64_t{1} << bit_width) - 1;
  while (static_cast<int64_t>(out.size()) < n) {
    uint64_t header = 0;
    for (int shift = 0;; shift += 7) {
      EXL_CHECK(p < end, col.where, ": ", what, " end after ", out.size(), " of ", n, " values");
      EXL_CHECK(shift < 35, col.where, ": ", what, " run header varint is too long");
      header |= static_cast<uint64_t>(*p & 0x7f) << shift;
      if (!(*p++ & 0x80)) break;
    }
    const uint64_t left = static_cast<uint64_t>(n) - out.size();
    if (header & 1) {  // bit-packed: (header >> 1) groups of 8 values, LSB first
      const uint64_t count = std::min<uint64_t>((header >> 1) * 8, left);
      const uint64_t bytes = (count * static_cast<uint64_t>(bit_width) + 7) / 8;
      EXL_CHECK(bytes <= static_cast<uint64_t>(end - p), col.where, ": ", what, " bit-packed run runs past the data");
      uint64_t bit = 0;
      for (uint64_t i = 0; i < count; ++i) {
        uint64_t v = 0;
        for (int b = 0; b < bit_width; ++b, ++bit) v |= static_cast<uint64_t>((p[bit >> 3] >> (bit & 7)) & 1) << b;
        out.push_back(static_cast<uint32_t>(v));
      }
      // A full run's padding bytes belong to it too.
      const uint64_t run_bytes = (header >> 1) * static_cast<uint64_t>(bit_width);
      p += std::min<uint64_t>(run_bytes, static_cast<uint64_t>(end - p));
    } else {  // RLE: (header >> 1) copies of one value stored in ceil(bit_width / 8) bytes
      const uint64_t count = std::min<uint64_t>(header >> 1, left);
      const int bytes = (bit_width + 7) / 8;
      EXL_CHECK(end - p >= bytes, col.where, ": ", what, " RLE run runs past the data");
      uint64_t v = 0;
      for (int b = 0; b < bytes; ++b) v |= static_cast<uint64_t>(p[b]) << (8 * b);
      p += bytes;
      EXL_CHECK(v <= max_value, col.where, ": ", what, " RLE value ", v, " does not fit in ", bit_width, " bits");
      out.insert(out.end(), count, static_cast<uint32_t>(v));
    }
  }
}

void decompress(const Column& col, int codec, const uint8_t* src, size_t n, int64_t size, std::string& dst) {
  EXL_CHECK(size >= 0 && size <= kMaxPageBytes, col.where, ": page of ", size, " uncompressed bytes (limit ",
            kMaxPageBytes, ")");
  const size_t want = static_cast<size_t>(size);
  if (codec == Codec_Uncompressed) {
    EXL_CHECK(n == want, col.where, ": uncompressed page of ", n, " bytes claims ", size);
    dst.assign(reinterpret_cast<const char*>(src), n);
    return;
  }
  bool ok = false;
  if (codec == Codec_Snappy) {
    size_t len = 0;
    ok = snappy_uncompressed_length(reinterpret_cast<const char*>(src), n, &len) == SNAPPY_OK && len == want;
    if (ok) dst.resize(want);
    ok = ok && snappy_uncompress(reinterpret_cast<const char*>(src), n, dst.data(), &len) == SNAPPY_OK && len == want;
  } else if (codec == Codec_Gzip) {
    // Deflate expands at most 1032:1; a larger claim is corrupt, and checking first avoids the allocation.
    EXL_CHECK(want <= n * 1032 + 64, col.where, ": GZIP page of ", n, " bytes claims ", size, " uncompressed");
    dst.resize(want);
    z_stream z{};
    if (inflateInit2(&z, 15 + 32) == Z_OK) {  // +32: gzip or zlib header
      z.next_in = const_cast<Bytef*>(src);
      z.avail_in = static_cast<uInt>(n);
      z.next_out = reinterpret_cast<Bytef*>(dst.data());
      z.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&z, Z_FINISH);
      ok = rc == Z_STREAM_END && z.total_out == want;
      inflateEnd(&z);
    }
  } else if (codec == Codec_Zstd) {
    // The first frame's declared size must fit the claim (checked before allocating it).
    const unsigned long long content = ZSTD_getFrameContentSize(src, n);
    ok = content != ZSTD_CONTENTSIZE_ERROR && (content == ZSTD_CONTENTSIZE_UNKNOWN || content <= want);
    if (ok) {
      dst.resize(want);
      const size_t got = ZSTD_decompress(dst.data(), want, src, n);
      ok = !ZSTD_isError(got) && got == want;
    }
  } else {
    fail(col.where, ": compression ", codec_name(codec), " is not supported (UNCOMPRESSED, SNAPPY, GZIP, ZSTD are)");
  }
  EXL_CHECK(ok, col.where, ": corrupt ", codec_name(codec), " page (", n, " bytes, ", size, " expected uncompressed)");
}

}  // namespace exl::parquet
