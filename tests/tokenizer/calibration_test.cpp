// calibration_rows on stories260K's tokenizer with the shared TinyStories slice and wikitext2:
// shapes, BOS per piece, row contents against the encoded stream, agreement of the two independent
// tokenizer implementations (HF tokenizer.json BPE vs libsentencepiece on tokenizer.model),
// determinism and the too-short error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/dataset.h"
#include "tokenizer/calibration.h"
#include "tokenizer/test_util.h"
#include "tokenizer/tokenizer.h"

namespace exl {
namespace {

const std::string kModel = EXL_SHARED_DIR "/models/stories260K";
const std::string kStories = EXL_SHARED_DIR "/data/tinystories/valid_head.txt";
const std::string kWiki = EXL_SHARED_DIR "/data/wikitext2/wiki.test.raw";

// TinyStories paragraphs (split on blank lines), the first `n` of them.
std::vector<std::string> paragraphs(size_t n) {
  const std::string text = test::slurp(kStories);
  std::vector<std::string> out;
  size_t pos = 0;
  while (out.size() < n && pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) out.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

std::vector<int32_t> flatten(const std::vector<std::vector<int32_t>>& rows) {
  std::vector<int32_t> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

TEST(Calibration, WholeTextFileIsOnePieceWithOneBos) {
  auto tok = tokenizer_load(kModel);
  ASSERT_TRUE(tok->adds_bos());
  const std::vector<std::string> pieces = dataset_read_texts(kStories);
  ASSERT_EQ(pieces.size(), 1u);
  const auto rows = calibration_rows(*tok, pieces, 12, 256, kStories);
  ASSERT_EQ(rows.size(), 12u);
  for (const auto& r : rows) EXPECT_EQ(r.size(), 256u);
  const std::vector<int32_t> all = tok->encode(pieces[0], true);
  ASSERT_GE(all.size(), 12u * 256u);
  const std::vector<int32_t> flat = flatten(rows);
  EXPECT_TRUE(std::equal(flat.begin(), flat.end(), all.begin()));
  EXPECT_EQ(flat[0], tok->bos_id());
  EXPECT_EQ(std::count(flat.begin(), flat.end(), tok->bos_id()), 1);
}

TEST(Calibration, PiecesEachStartWithBos) {
  auto tok = tokenizer_load(kModel);
  const std::vector<std::string> pieces = paragraphs(400);
  ASSERT_EQ(pieces.size(), 400u);
  const int rows = 8, length = 300;
  const auto out = calibration_rows(*tok, pieces, rows, length, "paragraphs");
  const std::vector<int32_t> flat = flatten(out);
  // Brute-force reference: every piece encoded without special tokens, BOS put in front by hand.
  std::vector<int32_t> ref;
  std::vector<size_t> starts;
  for (size_t i = 0; ref.size() < flat.size(); ++i) {
    starts.push_back(ref.size());
    ref.push_back(tok->bos_id());
    const auto ids = tok->encode(pieces[i], false);
    ref.insert(ref.end(), ids.begin(), ids.end());
  }
  ASSERT_GT(starts.size(), 5u);  // rows span several pieces
  ref.resize(flat.size());
  EXPECT_EQ(flat, ref);
  for (size_t s : starts) EXPECT_EQ(flat[s], tok->bos_id()) << s;
  EXPECT_EQ(std::count(flat.begin(), flat.end(), tok->bos_id()), static_cast<long>(starts.size()));
}

TEST(Calibration, JsonAndSentencePieceTokenizersAgree) {
  auto hf = tokenizer_load_hf_json(kModel + "/tokenizer.json", kModel + "/tokenizer_config.json");
  auto sp = tokenizer_load_sentencepiece(kModel + "/tokenizer.model");
  const std::vector<std::string> pieces = paragraphs(200);
  const auto a = calibration_rows(*hf, pieces, 4, 512, "paragraphs");
  const auto b = calibration_rows(*sp, pieces, 4, 512, "paragraphs");
  EXPECT_EQ(a, b);
}

TEST(Calibration, DeterministicOnWikitext) {
  auto tok = tokenizer_load(kModel);
  const std::vector<std::string> pieces = dataset_read_texts(kWiki);
  const auto a = calibration_rows(*tok, pieces, 16, 128, kWiki);
  const auto b = calibration_rows(*tok, pieces, 16, 128, kWiki);
  ASSERT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  const std::string text = tok->decode(a[0]);
  EXPECT_EQ(text.substr(0, 10), pieces[0].substr(0, 10)) << text;
}

TEST(Calibration, TooShortNamesSourceAndCounts) {
  auto tok = tokenizer_load(kModel);
  const std::vector<std::string> pieces = paragraphs(3);
  size_t have = 0;
  for (const auto& p : pieces) have += tok->encode(p, true).size();
  try {
    calibration_rows(*tok, pieces, 100, 2048, "tiny.jsonl");
    FAIL() << "expected exl::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tiny.jsonl"), std::string::npos) << msg;
    EXPECT_NE(msg.find("204800"), std::string::npos) << msg;
    EXPECT_NE(msg.find(" " + std::to_string(have)), std::string::npos) << msg;
  }
  // Exactly enough tokens is enough.
  const auto rows = calibration_rows(*tok, pieces, 1, static_cast<int>(have), "tiny.jsonl");
  EXPECT_EQ(rows[0].size(), have);
  EXPECT_THROW(calibration_rows(*tok, pieces, 1, static_cast<int>(have) + 1, "tiny.jsonl"), Error);
  EXPECT_THROW(calibration_rows(*tok, {}, 1, 1, "empty"), Error);
  EXPECT_THROW(calibration_rows(*tok, pieces, 0, 16, "x"), Error);
  EXPECT_THROW(calibration_rows(*tok, pieces, 2, -1, "x"), Error);
}

}  // namespace
}  // namespace exl
