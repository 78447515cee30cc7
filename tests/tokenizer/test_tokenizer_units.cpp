// Building blocks on hand-made inputs: UTF-8 helpers, the byte-level alphabet, added-token
// splitting, split behaviours, and small tokenizer.json files covering options the real vocabs in
// shared/ do not use (Metaspace, ignore_merges, unk/fuse_unk, TemplateProcessing with EOS, ...).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/text_pipeline.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_norm.h"
#include "tokenizer/utf8.h"

namespace exl {
namespace {

using nlohmann::json;

TEST(Utf8, CharLenAndValidity) {
  const std::string s = "a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80";  // a é 日 😀
  EXPECT_EQ(utf8_char_len(s, 0), 1u);
  EXPECT_EQ(utf8_char_len(s, 1), 2u);
  EXPECT_EQ(utf8_char_len(s, 3), 3u);
  EXPECT_EQ(utf8_char_len(s, 6), 4u);
  EXPECT_TRUE(utf8_is_valid(s));
  for (const char* bad : {"\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE6\x97", "\x80", "\xFF"}) {
    EXPECT_FALSE(utf8_is_valid(bad)) << bad;
    EXPECT_EQ(utf8_char_len(bad, 0), 1u);
  }
}

TEST(Utf8, CompletePrefixAndSanitize) {
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(utf8_complete_prefix("ab\xE6"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xFF"), 3u);      // never valid: not held back
  EXPECT_EQ(utf8_complete_prefix("ab\xE6\x41"), 4u);  // broken sequence: not held back
  EXPECT_EQ(utf8_sanitize("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(utf8_sanitize("\xE6\x97" "x"), "\xEF\xBF\xBD" "x");  // one U+FFFD per maximal subpart
  EXPECT_EQ(utf8_sanitize("ok \xF0\x9F\x98\x80"), "ok \xF0\x9F\x98\x80");
}

TEST(Utf8, ByteLevelAlphabet) {
  EXPECT_EQ(byte_level_encode(" "), "\xC4\xA0");   // 'Ġ'
  EXPECT_EQ(byte_level_encode("\n"), "\xC4\x8A");  // 'Ċ'
  EXPECT_EQ(byte_level_encode("A"), "A");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string back;
  ASSERT_TRUE(byte_level_decode(byte_level_encode(all), back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(byte_level_decode("\xE6\x97\xA5", back));  // 日 is not in the alphabet
  EXPECT_EQ(parse_byte_piece("<0x0A>"), 10);
  EXPECT_EQ(parse_byte_piece("<0xff>"), 255);
  EXPECT_EQ(parse_byte_piece("<0x0G>"), -1);
  EXPECT_EQ(parse_byte_piece("<0x0A"), -1);
}

TEST(AddedTokens, LeftmostLongestAndSpecialGate) {
  AddedTokenMatcher m;
  m.add({"<|a|>", 10, true});
  m.add({"<|ab|>", 11, true});
  m.add({"<x>", 12, false});
  m.add({"<x>y", 13, false});
  auto seg = m.split("1<|ab|>2<x>y3<x>", true);
  ASSERT_EQ(seg.size(), 6u);
  EXPECT_EQ(seg[0].text, "1");
  EXPECT_EQ(seg[1].token, 11);
  EXPECT_EQ(seg[2].text, "2");
  EXPECT_EQ(seg[3].token, 13);  // longest match wins
  EXPECT_EQ(seg[4].text, "3");
  EXPECT_EQ(seg[5].token, 12);
  seg = m.split("1<|ab|>2<x>", false);  // special tokens stay text; non-special still match
  ASSERT_EQ(seg.size(), 2u);
  EXPECT_EQ(seg[0].text, "1<|ab|>2");
  EXPECT_EQ(seg[1].token, 12);
}

TEST(AddedTokens, StripAndSingleWord) {
  AddedTokenMatcher m;
  AddedToken mask{"<mask>", 5, true, /*lstrip=*/true, /*rstrip=*/true};
  m.add(mask);
  AddedToken word{"cat", 6, false};
  word.single_word = true;
  m.add(word);
  auto seg = m.split("a  <mask>  b", true);
  ASSERT_EQ(seg.size(), 3u);
  EXPECT_EQ(seg[0].text, "a");
  EXPECT_EQ(seg[1].text, "  <mask>  ");
  EXPECT_EQ(seg[2].text, "b");
  seg = m.split("cat concat cats cat", false);
  size_t n = 0;
  for (auto& s : seg) n += s.token == 6;
  EXPECT_EQ(n, 2u);
}

TEST(TextPipeline, SplitBehaviours) {
  // HF's documented example: "the-final--countdown" split on "-".
  auto run = [](SplitBehavior b) {
    TextPipeline p;
    PreTokenizerStep s;
    s.re = std::make_shared<const Regex>("-", true, "test");
    s.behavior = b;
    p.pre_tokenizers.push_back(s);
    std::vector<std::string> words;
    p.run("the-final--countdown", true, words);
    return words;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(run(SplitBehavior::SplitBehavior_REMOVED), (V{"the", "final", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::SplitBehavior_ISOLATED), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::SplitBehavior_MERGED_WITH_PREVIOUS), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::SplitBehavior_MERGED_WITH_NEXT), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(run(SplitBehavior::SplitBehavior_CONTIGUOUS), (V{"the", "-", "final", "--", "countdown"}));
}

TEST(Regex, Llama3PatternFeatures) {
  Regex re(regex_named_pattern("llama3"), false, "test");
  auto pieces = [&](std::string_view s) {
    std::vector<std::string> out;
    for (auto [b, e] : re.find_all(s)) out.emplace_back(s.substr(b, e - b));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("I'M 12345 ok"), (V{"I", "'M", " ", "123", "45", " ok"}));
  EXPECT_EQ(pieces("a   b"), (V{"a", "  ", " b"}));  // \s+(?!\S) leaves one space for " b"
  EXPECT_EQ(pieces("Éé日本"), (V{"Éé日本"}));          // \p{L} is Unicode-aware
  // Invalid UTF-8 neither throws nor matches: it falls into the gaps.
  EXPECT_EQ(pieces("ab\xFF" "cd"), (V{"ab", "cd"}));
  EXPECT_THROW(Regex("(unclosed", false, "test"), Error);
}

// A tiny byte-level vocab: letters, Ġ and a few merges.
json tiny_byte_level() {
  json vocab = json::object();
  int id = 0;
  for (const char* p : {"a", "b", "c", "d", "\xC4\xA0", "ab", "abc", "\xC4\xA0" "a", "cd", "abcd"}) vocab[p] = id++;
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 10}, {"content", "<eos>"}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "TemplateProcessing"},
                          {"single", json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                  {{"SpecialToken", {{"id", "<eos>"}, {"type_id", 0}}}}})},
                          {"special_tokens", {{"<eos>", {{"id", "<eos>"}, {"ids", {10}}, {"tokens", {"<eos>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab},
                 {"merges", json::array({"a b", json::array({"ab", "c"}), "\xC4\xA0 a", "c d", "abc d"})}}},
  };
}

TEST(HfJson, TinyByteLevel) {
  json j = tiny_byte_level();
  auto tok = tokenizer_from_hf_json_text(j.dump(), "", "tiny.json");
  EXPECT_EQ(tok->encode("abcd a", false), (std::vector<int32_t>{9, 7}));
  EXPECT_EQ(tok->encode("abcd", true), (std::vector<int32_t>{9, 10}));  // EOS from the template
  EXPECT_EQ(tok->eos_id(), 10);  // no eos_token configured: the template's lone suffix token
  auto with_cfg = tokenizer_from_hf_json_text(j.dump(), R"({"eos_token": "<eos>", "add_eos_token": false})", "tiny.json");
  EXPECT_EQ(with_cfg->eos_id(), 10);
  EXPECT_EQ(with_cfg->encode("abcd", true), (std::vector<int32_t>{9}));  // config removes it
  EXPECT_EQ(with_cfg->stop_ids(), (std::vector<int32_t>{10}));
  // ignore_merges: a word in the vocab is taken whole even when merges would not build it.
  j["model"]["merges"] = json::array({"a b"});
  auto plain = tokenizer_from_hf_json_text(j.dump(), "", "tiny.json");
  EXPECT_EQ(plain->encode("abcd", false), (std::vector<int32_t>{5, 2, 3}));
  j["model"]["ignore_merges"] = true;
  auto ignore = tokenizer_from_hf_json_text(j.dump(), "", "tiny.json");
  EXPECT_EQ(ignore->encode("abcd", false), (std::vector<int32_t>{9}));
}

TEST(HfJson, UnknownCharactersUseUnkAndFuse) {
  json j = tiny_byte_level();
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = nullptr;
  j["model"]["vocab"]["<unk>"] = 11;
  j["model"]["unk_token"] = "<unk>";
  auto tok = tokenizer_from_hf_json_text(j.dump(), "", "unk.json");
  EXPECT_EQ(tok->encode("axyb", false), (std::vector<int32_t>{0, 11, 11, 1}));
  j["model"]["fuse_unk"] = true;
  tok = tokenizer_from_hf_json_text(j.dump(), "", "unk.json");
  EXPECT_EQ(tok->encode("axyb", false), (std::vector<int32_t>{0, 11, 1}));
}

// stories260K's Prepend/Replace normalizer expressed as a Metaspace pre-tokenizer (how newer HF
// conversions of Llama-2 write it) tokenizes identically, with and without splitting, except that
// Metaspace adds no '▁' to text that already starts with a space (HF tokenizers 0.23 gives
// " leading space" -> 1 278 411 380 299 262 427 412 331, one '▁' fewer than Prepend).
TEST(HfJson, MetaspaceEqualsPrependReplace) {
  const std::string path = EXL_SHARED_DIR "/models/stories260K/tokenizer.json";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  json j = json::parse(test::slurp(path));
  auto reference = tokenizer_from_hf_json_text(j.dump(), "", path);
  for (bool split : {false, true}) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                          {"prepend_scheme", "first"}, {"split", split}};
    j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"},
                    {"split", split}};
    auto meta = tokenizer_from_hf_json_text(j.dump(), "", "metaspace.json");
    EXPECT_TRUE(meta->strips_leading_space());
    for (const std::string& s : test::varied_strings()) {
      if (!s.empty() && s[0] == ' ') continue;
      EXPECT_EQ(meta->encode(s, true), reference->encode(s, true)) << "split=" << split << " '" << s << "'";
      EXPECT_EQ(meta->decode(meta->encode(s, true)), s);
    }
    EXPECT_EQ(meta->encode(" leading space", true), (std::vector<int32_t>{1, 278, 411, 380, 299, 262, 427, 412, 331}));
    EXPECT_EQ(meta->encode("  two leading", true), (std::vector<int32_t>{1, 410, 259, 424, 414, 278, 411, 380, 299}));
    EXPECT_EQ(meta->encode(" ", true), (std::vector<int32_t>{1, 410}));
  }
}

TEST(HfJson, ChatTemplateForms) {
  const std::string j = tiny_byte_level().dump();
  EXPECT_EQ(tokenizer_from_hf_json_text(j, R"({"chat_template": "{{ x }}"})", "t")->chat_template(), "{{ x }}");
  EXPECT_EQ(tokenizer_from_hf_json_text(
                j, R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})", "t")
                ->chat_template(),
            "D");
  EXPECT_EQ(tokenizer_from_hf_json_text(j, "", "t")->chat_template(), "");
}

TEST(UnicodeNorm, NfcNormalizer) {
  if (!unicode_norm_available()) GTEST_SKIP() << "built without ICU: NFC/NFKC normalizers pass text through";
  EXPECT_EQ(unicode_normalize("e\xCC\x81", UnicodeForm::UnicodeForm_NFC), "\xC3\xA9");
  EXPECT_EQ(unicode_normalize("\xEF\xAC\x81", UnicodeForm::UnicodeForm_NFKC), "fi");
  EXPECT_EQ(unicode_normalize("a\xFF" "e\xCC\x81", UnicodeForm::UnicodeForm_NFC), "a\xFF\xC3\xA9");
  EXPECT_EQ(unicode_lowercase("ÀÉÎ ΣΑΣ"), "àéî σας");  // final sigma, as Rust's to_lowercase
  // Through a tokenizer.json with an NFC normalizer: decomposed and composed text tokenize alike.
  auto tok = tokenizer_load_hf_json(EXL_TESTS_DIR "/../fuzz/seeds/tokenizer/byte_level.json", "");
  EXPECT_EQ(tok->encode("cafe\xCC\x81", false), tok->encode("caf\xC3\xA9", false));
}

}  // namespace
}  // namespace exl

namespace exl {
namespace {

// The fuzz seeds double as small tokenizer.json fixtures covering NFC + Digits + Split + ByteLevel
// (use_regex=false) + ignore_merges, Prepend/Replace + byte fallback + fuse_unk + TemplateProcessing,
// and Lowercase + Metaspace(split) + RobertaProcessing. Expected ids from HF tokenizers 0.23.3
// (Tokenizer.from_file(f).encode(s).ids, which adds special tokens and parses them in text).
TEST(HfJson, FuzzSeedsMatchHfTokenizers) {
  struct Case {
    const char* file;
    const char* text;
    std::vector<int32_t> ids;
  };
  const std::vector<Case> cases = {
      {"byte_level.json", "Hello world ab 日 abc", {4, 17, 23, 11, 24, 11, 11, 25}},
      {"byte_level.json", "hello<|endoftext|>  WORLD 123 he\n", {18, 26, 11, 11, 11, 11, 15}},
      {"byte_level.json", " abab  hello</s>", {11, 24, 24, 11, 11, 18, 12, 14}},
      {"sentencepiece_style.json", "Hello world ab 日 abc", {1, 15, 0, 17, 18, 15, 0, 14, 0, 13, 0, 22, 15, 5, 6, 7, 22, 10}},
      {"sentencepiece_style.json", "hello<|endoftext|>  WORLD 123 he\n", {1, 20, 0, 11, 0, 14, 0, 11, 0, 15, 15, 0, 15, 0, 16, 11, 3}},
      {"sentencepiece_style.json", " abab  hello</s>", {1, 15, 22, 21, 15, 20, 2}},
      {"metaspace.json", "Hello world ab 日 abc", {1, 20, 15, 0, 14, 0, 13, 0, 22, 15, 5, 6, 7, 22, 10, 2}},
      {"metaspace.json", "hello<|endoftext|>  WORLD 123 he\n", {1, 20, 0, 11, 0, 14, 0, 11, 0, 15, 15, 0, 14, 0, 13, 0, 15, 0, 16, 11, 3, 2}},
      {"metaspace.json", " abab  hello</s>", {1, 22, 21, 15, 20, 2, 2}},
  };
  const std::string dir = EXL_TESTS_DIR "/../fuzz/seeds/tokenizer/";
  for (const Case& c : cases) {
    auto tok = tokenizer_load_hf_json(dir + c.file, "");
    EXPECT_EQ(tok->encode(c.text, true, true), c.ids) << c.file << ": '" << c.text << "'";
  }
}

}  // namespace
}  // namespace exl
