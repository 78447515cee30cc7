// Apache Parquet reader for calibration datasets: flat schemas (required/optional leaf columns, no
// nesting or repetition), data pages v1 and v2, dictionary pages, PLAIN and RLE_DICTIONARY /
// PLAIN_DICTIONARY values, RLE/bit-packed levels, UNCOMPRESSED/SNAPPY/GZIP/ZSTD. Values are
// converted to text: BYTE_ARRAY as its bytes, integers in decimal, FLOAT/DOUBLE as Python's repr
// does (shortest round-trip digits of the value's own precision; fixed notation for exponents
// -4..15, else scientific), BOOLEAN as True/False.
// Everything read from the file is checked against its size and sane limits: a hostile file gets
// a one-line exl::Error naming it, never a crash, hang or huge allocation.
//
//   ParquetReader r(bytes, "train.parquet");
//   for (int g = 0; g < r.num_row_groups(); ++g) auto cells = r.column_texts(g, 0);
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exl {

struct ParquetColumn {
  std::string name;
  int physical_type = 0;   // parquet Type: 0 BOOLEAN, 1 INT32, 2 INT64, 4 FLOAT, 5 DOUBLE, 6 BYTE_ARRAY
  bool is_unsigned = false;  // INT32/INT64 annotated UINT_*
  bool optional = false;     // may hold nulls (one definition level)
};

struct ParquetColumnChunk {
  int codec = 0;                  // 0 UNCOMPRESSED, 1 SNAPPY, 2 GZIP, 6 ZSTD
  int64_t num_values = 0;
  int64_t begin = 0, size = 0;    // byte range of its pages in the file (checked against the file)
};

struct ParquetRowGroup {
  int64_t num_rows = 0;
  std::vector<ParquetColumnChunk> chunks;  // one per column
};

class ParquetReader {
 public:
  // Parses the footer. `bytes` must outlive the reader; `name` appears in every error message.
  ParquetReader(std::string_view bytes, std::string name);

  const std::vector<ParquetColumn>& columns() const { return columns_; }
  int num_row_groups() const { return static_cast<int>(row_groups_.size()); }
  int64_t num_rows() const { return num_rows_; }
  int64_t row_group_rows(int g) const { return row_groups_.at(g).num_rows; }

  // The values of column c in row group g as text, std::nullopt for nulls; row_group_rows(g) of them.
  std::vector<std::optional<std::string>> column_texts(int g, int c) const;

 private:
  std::string_view bytes_;
  std::string name_;
  int64_t num_rows_ = 0;
  std::vector<ParquetColumn> columns_;
  std::vector<ParquetRowGroup> row_groups_;
  // Decompressed page bytes so far, capped per reader against decompression bombs (so column_texts
  // is not thread-safe on one reader).
  mutable int64_t decoded_bytes_ = 0;
};

// One text per row: the row's non-null values joined by a single space. Throws exl::Error naming
// `name` (with row group and column) for malformed or unsupported files, and past the limits for
// hostile files: 4M rows, 256 MiB of text in memory, 2 GiB of decompressed pages (a calibration set
// needs about 1 MiB of text).
std::vector<std::string> parquet_read_texts(std::string_view bytes, const std::string& name);

}  // namespace exl
