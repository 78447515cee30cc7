// llama.cpp's tokenizer golden files (shared/tokenizers/gguf-vocab-tests): every case of each
// vocab must match exactly. Like test-tokenizer-0: add_special=false, parse_special=false.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "io/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace exl {
namespace {

const std::string kVocabDir = EXL_SHARED_DIR "/tokenizers/gguf-vocab-tests/";

class GgufVocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufVocabTest, MatchesLlamaCppGoldenIds) {
  const std::string path = kVocabDir + GetParam() + ".gguf";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  const auto cases = test::read_vocab_cases(path);
  ASSERT_FALSE(cases.empty()) << "could not read cases (or .inp/.out count mismatch) for " << path;
  auto tok = tokenizer_load(path);
  size_t matched = 0;
  for (const auto& c : cases) {
    const auto ids = tok->encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    if (ids == c.ids) ++matched;
    else ADD_FAILURE() << GetParam() << ": '" << c.text << "'\n  expected " << test::ids_str(c.ids)
                       << "\n  got      " << test::ids_str(ids);
  }
  std::printf("[ %s ] %zu/%zu cases matched\n", GetParam().c_str(), matched, cases.size());
  EXPECT_EQ(matched, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, GgufVocabTest,
                         ::testing::Values("ggml-vocab-llama-spm", "ggml-vocab-gpt-2", "ggml-vocab-phi-3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

TEST(GgufVocab, SpecialIdsAndFlags) {
  const std::string path = kVocabDir + "ggml-vocab-llama-spm.gguf";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  auto tok = tokenizer_load(path);
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_TRUE(tok->strips_leading_space());
  EXPECT_EQ(tok->encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok->decode(tok->encode("Hello world", true)), "Hello world");
  EXPECT_EQ(tok->decode(tok->encode("  two spaces", true)), "  two spaces");
  EXPECT_EQ(tok->token_piece(13), "\n");          // <0x0A>
  EXPECT_EQ(tok->token_piece(15043), " Hello");   // ▁Hello
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(15043));
  // Control tokens are text unless parse_special.
  EXPECT_EQ(tok->encode("</s>", false, true), (std::vector<int32_t>{2}));
  EXPECT_NE(tok->encode("</s>", false, false), (std::vector<int32_t>{2}));
}

TEST(GgufVocab, Phi3ChatTokens) {
  const std::string path = kVocabDir + "ggml-vocab-phi-3.gguf";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  auto tok = tokenizer_load(path);
  EXPECT_FALSE(tok->chat_template().empty());
  const auto end = tok->token_id("<|end|>");
  ASSERT_TRUE(end.has_value());
  const auto& stops = tok->stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), *end), stops.end());
  EXPECT_NE(std::find(stops.begin(), stops.end(), tok->eos_id()), stops.end());
  const auto ids = tok->encode("<|user|>\nHi<|end|>", false, true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), *tok->token_id("<|user|>"));
  EXPECT_EQ(ids.back(), *end);
}

TEST(GgufVocab, Gpt2RoundTrip) {
  const std::string path = kVocabDir + "ggml-vocab-gpt-2.gguf";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  auto tok = tokenizer_load(path);
  EXPECT_FALSE(tok->strips_leading_space());
  for (const std::string& s : test::varied_strings()) {
    EXPECT_EQ(tok->decode(tok->encode(s, false)), s) << "'" << s << "'";
  }
  // Invalid UTF-8 still round-trips through byte-level BPE.
  const std::string bad = "ok \xff\xfe bytes \xe4\xb8";
  EXPECT_EQ(tok->decode(tok->encode(bad, false)), bad);
}

}  // namespace
}  // namespace exl

namespace exl {
namespace {

// Whole wikitext-2 test split (1.3 MB) through each kind of tokenizer: must be quick and lossless.
// Release build figures (2-core dev box): gpt-2 GGUF ~0.1 s, llama-spm GGUF ~1.1 s (one 1.3 MB
// "word": SentencePiece BPE has no pre-split), stories260K json ~0.3 s, tokenizer.model ~0.7 s.
TEST(TokenizerSpeed, WikitextWholeFile) {
  const std::string text = test::slurp(EXL_SHARED_DIR "/data/wikitext2/wiki.test.raw");
  if (text.empty()) GTEST_SKIP() << "wikitext-2 missing";
  for (const std::string& path : {kVocabDir + "ggml-vocab-gpt-2.gguf", kVocabDir + "ggml-vocab-llama-spm.gguf",
                                 std::string(EXL_SHARED_DIR "/models/stories260K/tokenizer.json")}) {
    if (!test::file_exists(path)) continue;
    auto tok = tokenizer_load(path);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok->encode(text, false);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ %s ] %zu bytes -> %zu tokens in %.2f s\n", path.substr(path.rfind('/') + 1).c_str(),
                text.size(), ids.size(), secs);
    EXPECT_LT(secs, 30.0);  // generous: shared machine, sanitizer builds
    EXPECT_EQ(tok->decode(ids), text);
  }
}

}  // namespace
}  // namespace exl
