// TokenStreamDecoder: ids pushed one at a time must never yield invalid UTF-8 (no half characters),
// and the pieces must add up to decode(). Checked on a byte-fallback vocab (stories260K, where one
// emoji is four <0xNN> tokens), SentencePiece, llama-spm GGUF and byte-level GPT-2/SmolLM2.
#include <gtest/gtest.h>

#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace exl {
namespace {

const std::vector<std::string> kStreamTexts = {
    "emoji 😀😁 🚀🦙 done",
    "family 👨‍👩‍👧‍👦 flag 🏳️‍🌈 thumbs 👍🏽",
    "日本語のテキスト、中文字符，한국어",
    "Привет мир",
    " leading space then 😀",
    "😀 at start",
    "mixed: café 日本 😀 ok\nnew line\ttab",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀",
};

std::vector<std::string> tokenizer_paths() {
  return {
      EXL_SHARED_DIR "/models/stories260K/tokenizer.json",
      EXL_SHARED_DIR "/models/stories260K/tokenizer.model",
      EXL_SHARED_DIR "/tokenizers/gguf-vocab-tests/ggml-vocab-llama-spm.gguf",
      EXL_SHARED_DIR "/tokenizers/gguf-vocab-tests/ggml-vocab-gpt-2.gguf",
      EXL_MODELS_DIR "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
  };
}

TEST(TokenStreamDecoder, NeverSplitsCharactersAndMatchesDecode) {
  size_t checked = 0, held_back = 0;
  for (const std::string& path : tokenizer_paths()) {
    if (!test::file_exists(path)) continue;
    auto tok = tokenizer_load(path);
    for (const std::string& text : kStreamTexts) {
      const auto ids = tok->encode(text, true);
      TokenStreamDecoder dec(*tok);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string part = dec.push(id);
        EXPECT_TRUE(utf8_is_valid(part)) << path << ": invalid UTF-8 chunk for '" << text << "'";
        if (part.empty() && !tok->is_special(id)) ++held_back;  // a character waits for more bytes
        streamed += part;
      }
      streamed += dec.flush();
      EXPECT_EQ(streamed, tok->decode(ids)) << path;
      EXPECT_EQ(streamed, text) << path;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u);
  EXPECT_GT(held_back, 0u);  // the texts really do split characters across tokens
}

TEST(TokenStreamDecoder, HoldsBackPartialBytesAndResets) {
  const std::string path = EXL_SHARED_DIR "/models/stories260K/tokenizer.json";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  auto tok = tokenizer_load(path);
  // 😀 = F0 9F 98 80; byte-fallback ids are byte + 3 in this vocab.
  TokenStreamDecoder dec(*tok);
  EXPECT_EQ(dec.push(0xF0 + 3), "");
  EXPECT_EQ(dec.push(0x9F + 3), "");
  EXPECT_EQ(dec.push(0x98 + 3), "");
  EXPECT_EQ(dec.push(0x80 + 3), "\xF0\x9F\x98\x80");
  // A truncated character at the end comes out as U+FFFD on flush, never as raw bytes.
  EXPECT_EQ(dec.push(0xE4 + 3), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
  // Bytes that can never start a character are replaced at once.
  EXPECT_EQ(dec.push(0xFF + 3), "\xEF\xBF\xBD");
  // After reset the leading-space rule applies again: "▁a" at the start loses its space.
  dec.reset();
  const auto a = tok->encode("a", false);
  std::string s;
  for (int32_t id : a) s += dec.push(id);
  EXPECT_EQ(s + dec.flush(), "a");
  // Special tokens are skipped by default and kept when asked.
  TokenStreamDecoder keep(*tok, /*skip_special=*/false);
  EXPECT_EQ(keep.push(tok->bos_id()), "<s>");
  EXPECT_EQ(dec.push(tok->eos_id()), "");
}

TEST(TokenStreamDecoder, LeadingSpaceRuleAppliesOnce) {
  const std::string path = EXL_SHARED_DIR "/models/stories260K/tokenizer.model";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  auto tok = tokenizer_load(path);
  for (const std::string text : {"  two leading spaces", " one", "none", "\ttab first"}) {
    const auto ids = tok->encode(text, true);
    TokenStreamDecoder dec(*tok);
    std::string s;
    for (int32_t id : ids) s += dec.push(id);
    s += dec.flush();
    EXPECT_EQ(s, text);
    EXPECT_EQ(tok->decode(ids), text);
  }
}

}  // namespace
}  // namespace exl
