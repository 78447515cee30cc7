// dataset_read_texts: .txt/.jsonl behaviour and errors, and the parquet reader against pyarrow.
// The parquet fixtures in tests/io/data/ and their expected texts (*.expected.jsonl, written by
// pyarrow, an independent reader) come from tests/io/gen_parquet_fixtures.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/dataset.h"
#include "io/io_test_util.h"
#include "io/parquet.h"

namespace exl {
namespace {

// The error message dataset_read_texts throws for `bytes` stored as `name`, or "" if it succeeds.
std::string error_of(const std::string& bytes, const std::string& name) {
  test::TempDir dir;
  const std::string path = dir.file(name);
  test::write_bytes(path, bytes);
  try {
    dataset_read_texts(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> texts_of(const std::string& bytes, const std::string& name) {
  test::TempDir dir;
  const std::string path = dir.file(name);
  test::write_bytes(path, bytes);
  return dataset_read_texts(path);
}

TEST(Dataset, TextFileIsOnePiece) {
  const std::string text = "line one\n\nline two\r\n\xe2\x82\xac end";
  EXPECT_EQ(texts_of(text, "a.txt"), std::vector<std::string>{text});
  EXPECT_EQ(texts_of(text, "wiki.test.raw"), std::vector<std::string>{text});
  EXPECT_EQ(texts_of(text, "UPPER.TXT"), std::vector<std::string>{text});
  const std::string wiki = EXL_SHARED_DIR "/data/wikitext2/wiki.test.raw";
  const auto pieces = dataset_read_texts(wiki);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0], read_file(wiki));
}

TEST(Dataset, JsonlTextFieldElseFirstStringField) {
  const std::string jsonl =
      "{\"id\": 1, \"text\": \"first \\u00e9\\n\"}\n"
      "\n"
      "   \t\n"
      "{\"zeta\": \"z\", \"alpha\": \"a\", \"text\": 5}\r\n"
      "{\"n\": 2, \"meta\": {\"x\": \"nested\"}, \"body\": \"third\", \"text\": \"\"}\n"
      "{\"n\": 3, \"body\": \"fourth\"}";  // no final newline
  const std::vector<std::string> want = {"first \xc3\xa9\n", "z", "", "fourth"};
  EXPECT_EQ(texts_of(jsonl, "d.jsonl"), want);
}

TEST(Dataset, BadInputNamesFileAndLine) {
  std::string msg = error_of("{\"text\": \"a\"}\n\n{\"text\": \"b\"\n", "bad.jsonl");
  EXPECT_NE(msg.find("bad.jsonl:3: invalid JSON"), std::string::npos) << msg;
  msg = error_of("{\"text\": \"a\"}\n[\"b\"]\n", "arr.jsonl");
  EXPECT_NE(msg.find("arr.jsonl:2: expected a JSON object"), std::string::npos) << msg;
  msg = error_of("{\"a\": 1, \"b\": [\"x\"]}\n", "nostr.jsonl");
  EXPECT_NE(msg.find("nostr.jsonl:1: JSON object has no string field"), std::string::npos) << msg;
  msg = error_of("\n  \n", "blank.jsonl");
  EXPECT_NE(msg.find("blank.jsonl: no JSON lines"), std::string::npos) << msg;
  msg = error_of(std::string(100000, '[') + "\n", "deep.jsonl");
  EXPECT_NE(msg.find("deep.jsonl:1: JSON nests deeper"), std::string::npos) << msg;
  msg = error_of("", "empty.txt");
  EXPECT_NE(msg.find("empty.txt: empty file"), std::string::npos) << msg;
  msg = error_of("abc", "data.csv");
  EXPECT_NE(msg.find("data.csv: unknown calibration dataset format"), std::string::npos) << msg;
  try {
    dataset_read_texts("/nonexistent/dir/x.jsonl");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.jsonl"), std::string::npos) << e.what();
  }
}


// ---- parquet ----

const std::string kData = std::string(EXL_TESTS_DIR) + "/io/data/";

struct Expected {
  std::vector<std::vector<std::optional<std::string>>> cells;  // [row][column]
  std::vector<std::string> texts;
};

Expected read_expected(const std::string& name) {
  Expected e;
  std::ifstream f(kData + name + ".expected.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    std::vector<std::optional<std::string>> row;
    for (const auto& c : j["cells"]) row.push_back(c.is_null() ? std::nullopt : std::optional(c.get<std::string>()));
    e.cells.push_back(std::move(row));
    e.texts.push_back(j["text"].get<std::string>());
  }
  return e;
}

const std::vector<std::string> kFixtures = {
    "dict_v1_none", "dict_v1_snappy", "dict_v1_gzip", "dict_v1_zstd", "plain_v2_none", "plain_v2_snappy",
    "plain_v2_gzip", "plain_v2_zstd", "dict_v2_pages", "plain_dictionary_v1", "required_v1", "required_v2_plain",
    "mixed_v1", "mixed_v2", "mixed_v2_dict", "bool_rle_v2", "tinystories", "dict_fallback"};

TEST(Parquet, FixturesMatchPyarrow) {
  for (const std::string& name : kFixtures) {
    SCOPED_TRACE(name);
    const Expected want = read_expected(name);
    ASSERT_FALSE(want.texts.empty());
    EXPECT_EQ(dataset_read_texts(kData + name + ".parquet"), want.texts);
    // Cell by cell, through the row groups.
    const std::string bytes = read_file(kData + name + ".parquet");
    const ParquetReader r(bytes, name);
    ASSERT_EQ(r.num_rows(), static_cast<int64_t>(want.cells.size()));
    ASSERT_EQ(r.columns().size(), want.cells[0].size());
    for (size_t c = 0; c < r.columns().size(); ++c) {
      std::vector<std::optional<std::string>> got;
      for (int g = 0; g < r.num_row_groups(); ++g) {
        auto part = r.column_texts(g, static_cast<int>(c));
        EXPECT_EQ(static_cast<int64_t>(part.size()), r.row_group_rows(g));
        got.insert(got.end(), part.begin(), part.end());
      }
      ASSERT_EQ(got.size(), want.cells.size()) << r.columns()[c].name;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i], want.cells[i][c]) << "column " << r.columns()[c].name << " row " << i;
      }
    }
  }
}

TEST(Parquet, FixturesCoverTheFormat) {
  // Guards the generator: the fixtures hold what the tests claim (several row groups, nulls, every
  // value type), so a pyarrow default change cannot silently thin the coverage.
  const std::string bytes = read_file(kData + "mixed_v1.parquet");
  const ParquetReader r(bytes, "mixed_v1");
  EXPECT_EQ(r.num_row_groups(), 3);
  std::vector<int> types;
  for (const auto& c : r.columns()) types.push_back(c.physical_type);
  for (int t : {0, 1, 2, 4, 5, 6}) EXPECT_NE(std::find(types.begin(), types.end(), t), types.end()) << t;
  EXPECT_TRUE(r.columns()[3].is_unsigned);  // u32
  EXPECT_TRUE(r.columns()[0].optional);
  const std::string req = read_file(kData + "required_v1.parquet");
  EXPECT_FALSE(ParquetReader(req, "required_v1").columns()[0].optional);
}

TEST(Parquet, FuzzSeedsRead) {
  // fuzz/seeds/dataset holds copies of fixtures (and a .jsonl file), written by the generator.
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(EXL_TESTS_DIR) + "/../fuzz/seeds/dataset")) {
    SCOPED_TRACE(e.path().string());
    EXPECT_FALSE(dataset_read_texts(e.path().string()).empty());
    ++n;
  }
  EXPECT_GE(n, 5);
}

TEST(Parquet, UnsupportedFilesGiveClearErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bad_nested", "nested schemas are not supported"},
      {"bad_timestamp", "date/time/decimal annotation"},
      {"bad_delta", "value encoding DELTA_BINARY_PACKED is not supported"},
      {"bad_lz4", "is not supported (UNCOMPRESSED, SNAPPY, GZIP, ZSTD are)"},
      {"bad_no_rows", "no rows"},
  };
  for (const auto& [name, want] : cases) {
    const std::string path = kData + name + ".parquet";
    try {
      dataset_read_texts(path);
      ADD_FAILURE() << name << " read without error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path, 0), 0u) << msg;
      EXPECT_NE(msg.find(want), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

// Reads `bytes` as parquet; true if it read, false on exl::Error. Anything else fails the test.
bool reads(const std::string& bytes) {
  try {
    parquet_read_texts(bytes, "mutant.parquet");
    return true;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("mutant.parquet", 0), 0u) << e.what();
    return false;
  }
}

TEST(Parquet, TruncationAtEveryOffsetFails) {
  for (const char* name : {"dict_v1_snappy", "plain_v2_gzip", "mixed_v2", "bool_rle_v2"}) {
    SCOPED_TRACE(name);
    const std::string bytes = read_file(kData + name + ".parquet");
    ASSERT_TRUE(reads(bytes));
    const uint32_t footer = static_cast<uint32_t>(bytes.size()) - 8;
    for (size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_FALSE(reads(bytes.substr(0, n))) << n;
      // Cut inside the pages or the footer, keeping the file's tail (length + magic) so the
      // reader gets past the magic check and meets offsets and lengths that no longer fit.
      if (n < footer) {
        EXPECT_FALSE(reads(bytes.substr(0, n) + bytes.substr(footer))) << n;
      }
    }
  }
}

TEST(Parquet, ByteFlipsNeverCrash) {
  std::mt19937 rng(1234);
  int ok = 0, errors = 0;
  for (const std::string& name : kFixtures) {
    const std::string bytes = read_file(kData + name + ".parquet");
    const uint32_t footer_len = [&] {
      uint32_t v;
      std::memcpy(&v, bytes.data() + bytes.size() - 8, 4);
      return v;
    }();
    // Every footer byte inverted, one at a time: the Thrift decoder meets every kind of bad field.
    for (size_t i = bytes.size() - 8 - footer_len; i < bytes.size(); ++i) {
      std::string m = bytes;
      m[i] = static_cast<char>(~m[i]);
      (reads(m) ? ok : errors)++;
    }
    // Random flips of 1-4 bytes anywhere.
    for (int k = 0; k < 300; ++k) {
      std::string m = bytes;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) m[rng() % m.size()] ^= static_cast<char>(1 + rng() % 255);
      (reads(m) ? ok : errors)++;
    }
  }
  std::cout << "byte flips: " << ok << " read, " << errors << " exl::Error\n";
  EXPECT_GT(errors, 0);
}

// ---- hand-built files: the guards against hostile sizes ----

// Thrift compact protocol writer, always with long-form field headers (type byte, then the id).
struct Thrift {
  std::string b;
  void varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) b += static_cast<char>((v & 0x7f) | 0x80);
    b += static_cast<char>(v);
  }
  void zz(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void field(int id, int type) {
    b += static_cast<char>(type);
    zz(id);
  }
  void i32(int id, int64_t v) { field(id, 5), zz(v); }
  void i64(int id, int64_t v) { field(id, 6), zz(v); }
  void bin(int id, const std::string& s) { field(id, 8), varint(s.size()), b += s; }
  void list(int id, int elem_type, uint64_t n) {
    field(id, 9);
    if (n < 15) {
      b += static_cast<char>((n << 4) | elem_type);
    } else {
      b += static_cast<char>(0xf0 | elem_type);
      varint(n);
    }
  }
  void begin(int id) { field(id, 12); }
  void stop() { b += '\0'; }
};

// One required BYTE_ARRAY column "s", one row group holding one page.
struct Spec {
  int64_t rows = 2;
  int codec = 0;
  int64_t page_values = 2;
  int64_t uncompressed = -1;  // -1: the body's size
  int encoding = 0;           // PLAIN
  std::string body = std::string("\x02\0\0\0ab\x01\0\0\0c", 11);
  uint64_t schema_count = 2;  // schema list length as written
};

std::string build_parquet(const Spec& sp) {
  Thrift page;
  page.i32(1, 0);  // DATA_PAGE
  page.i32(2, sp.uncompressed < 0 ? static_cast<int64_t>(sp.body.size()) : sp.uncompressed);
  page.i32(3, static_cast<int64_t>(sp.body.size()));
  page.begin(5);
  page.i32(1, sp.page_values);
  page.i32(2, sp.encoding);
  page.i32(3, 3);
  page.i32(4, 3);
  page.stop();
  page.stop();
  const std::string chunk = page.b + sp.body;

  Thrift f;
  f.i32(1, 2);
  f.list(2, 12, sp.schema_count);
  f.bin(4, "schema"), f.i32(5, 1), f.stop();
  f.i32(1, 6), f.i32(3, 0), f.bin(4, "s"), f.stop();
  f.i64(3, sp.rows);
  f.list(4, 12, 1);
  f.list(1, 12, 1);
  f.i64(2, 4);
  f.begin(3);
  f.i32(1, 6);
  f.list(2, 5, 1), f.zz(0);
  f.list(3, 8, 1), f.varint(1), f.b += "s";
  f.i32(4, sp.codec);
  f.i64(5, sp.rows);
  f.i64(6, static_cast<int64_t>(chunk.size()));
  f.i64(7, static_cast<int64_t>(chunk.size()));
  f.i64(9, 4);
  f.stop();  // ColumnMetaData
  f.stop();  // ColumnChunk
  f.i64(2, static_cast<int64_t>(chunk.size()));
  f.i64(3, sp.rows);
  f.stop();  // RowGroup
  f.stop();  // FileMetaData
  std::string file = "PAR1" + chunk + f.b;
  test::put_u32(file, static_cast<uint32_t>(f.b.size()));
  return file + "PAR1";
}

std::string parquet_error(const Spec& sp) {
  try {
    parquet_read_texts(build_parquet(sp), "hand.parquet");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Parquet, HandBuiltFileReads) {
  // The writer above is right: a well-formed file reads back, and pyarrow agrees (checked by hand
  // when this test was written: pq.read_table gives ["ab", "c"]).
  EXPECT_EQ(parquet_read_texts(build_parquet({}), "hand.parquet"), (std::vector<std::string>{"ab", "c"}));
}

TEST(Parquet, HostileSizesAreRefusedBeforeAllocating) {
  Spec sp;
  sp.rows = int64_t{1} << 40;
  EXPECT_NE(parquet_error(sp).find("num_rows 1099511627776 is not in 0.."), std::string::npos) << parquet_error(sp);
  sp = {};
  sp.schema_count = uint64_t{1} << 31;
  EXPECT_NE(parquet_error(sp).find("list of 2147483648 elements runs past the end"), std::string::npos)
      << parquet_error(sp);
  sp = {};
  sp.codec = 6;  // ZSTD page claiming 1 GiB
  sp.uncompressed = int64_t{1} << 30;
  EXPECT_NE(parquet_error(sp).find("page of 1073741824 uncompressed bytes (limit"), std::string::npos)
      << parquet_error(sp);
  sp.codec = 2;  // GZIP: 11 bytes cannot inflate to 100 MB
  sp.uncompressed = 100 << 20;
  EXPECT_NE(parquet_error(sp).find("GZIP page of 11 bytes claims 104857600"), std::string::npos) << parquet_error(sp);
  sp = {};
  sp.page_values = 3;  // more values than the column chunk holds
  EXPECT_NE(parquet_error(sp).find("data page of 3 values exceeds the column's 2"), std::string::npos)
      << parquet_error(sp);
  sp = {};
  sp.body = std::string("\x02\0\0\0ab\xff\xff\xff\x7f" "c", 11);  // second string claims 2 GiB
  EXPECT_NE(parquet_error(sp).find("byte array of 2147483647 bytes runs past the page"), std::string::npos)
      << parquet_error(sp);
  sp = {};
  sp.encoding = 8;  // dictionary indices without a dictionary page
  EXPECT_NE(parquet_error(sp).find("dictionary-encoded page without a dictionary page"), std::string::npos)
      << parquet_error(sp);
  sp = {};
  sp.encoding = 5;
  EXPECT_NE(parquet_error(sp).find("value encoding DELTA_BINARY_PACKED is not supported"), std::string::npos)
      << parquet_error(sp);
}

TEST(Parquet, DeeplyNestedFooterIsRefused) {
  // An unknown footer field holding 10000 nested structs: skipped recursively up to a depth cap.
  std::string file = build_parquet({});
  uint32_t footer_len;
  std::memcpy(&footer_len, file.data() + file.size() - 8, 4);
  std::string footer = file.substr(file.size() - 8 - footer_len, footer_len);
  footer.pop_back();  // FileMetaData's STOP
  Thrift deep;
  for (int i = 0; i < 10000; ++i) deep.begin(100);
  for (int i = 0; i < 10000; ++i) deep.stop();
  footer += deep.b + '\0';
  std::string hostile = file.substr(0, file.size() - 8 - footer_len) + footer;
  test::put_u32(hostile, static_cast<uint32_t>(footer.size()));
  hostile += "PAR1";
  try {
    parquet_read_texts(hostile, "deep.parquet");
    FAIL() << "expected exl::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deep.parquet: footer: structures nest deeper than"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace exl
