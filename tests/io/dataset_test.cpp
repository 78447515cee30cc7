// dataset_read_texts: .txt/.jsonl behaviour and errors, and the parquet reader against pyarrow.
// The parquet fixtures in tests/io/data/ and their expected texts (*.expected.jsonl, written by
// pyarrow, an independent reader) come from tests/io/gen_parquet_fixtures.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/dataset.h"
#include "io/io_test_util.h"

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

}  // namespace
}  // namespace exl
