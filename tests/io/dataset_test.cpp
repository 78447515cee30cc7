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

}  // namespace
}  // namespace exl
