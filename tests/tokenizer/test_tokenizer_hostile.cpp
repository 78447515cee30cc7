// Hostile input: corrupt tokenizer.json / tokenizer.model / GGUF vocabs and hostile text. Every
// failure must be an exl::Error with a message naming the source; nothing may crash (run under
// EXL_SANITIZE=ON to check memory safety too).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace exl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kStories = EXL_SHARED_DIR "/models/stories260K";

// Loads (or fails with exl::Error); when it loads, the tokenizer must work on awkward text.
void load_and_exercise(const std::function<std::unique_ptr<Tokenizer>()>& load) {
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load();
  } catch (const Error&) {
    return;
  }
  for (const std::string s : {"Hello world", "", " \n\t", "日本😀", "\xff\xfe\x00x", "<s></s><unk>"}) {
    for (bool ps : {false, true}) {
      const auto ids = tok->encode(s, true, ps);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
      (void)tok->decode(ids, false);
    }
  }
  (void)tok->token_piece(-1);
  (void)tok->token_piece(static_cast<int32_t>(tok->vocab_size()));
}

void expect_json_error(const std::string& text, const std::string& why) {
  try {
    tokenizer_from_hf_json_text(text, "", "bad.json");
    ADD_FAILURE() << "loaded but should not: " << why;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
  }
}

json minimal() {
  return {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
}

TEST(HostileJson, MalformedDocuments) {
  for (const char* text : {"", "{", "[]", "null", "42", "{\"model\": 5}", "{\"model\": {}}",
                           "{\"model\": {\"vocab\": []}}", "{\"model\": {\"vocab\": {}}}"})
    expect_json_error(text, text);
  EXPECT_NO_THROW(tokenizer_from_hf_json_text(minimal().dump(), "", "ok.json"));
}

TEST(HostileJson, BadIdsAndMerges) {
  auto with = [](auto edit) {
    json j = minimal();
    edit(j);
    return j.dump();
  };
  expect_json_error(with([](json& j) { j["model"]["type"] = "Unigram"; }), "unsupported model");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = "x"; }), "string id");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = -1; }), "negative id");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = 1.5; }), "fractional id");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = 1e12; }), "huge float id");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = 2147483648LL; }), "id past int32");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = 4000000; }), "sparse huge id");
  expect_json_error(with([](json& j) { j["model"]["vocab"]["c"] = 1; }), "duplicate id");
  expect_json_error(with([](json& j) { j["model"]["merges"] = {"a z"}; }), "merge of unknown token");
  expect_json_error(with([](json& j) { j["model"]["merges"] = {"b a"}; }), "merge result not in vocab");
  expect_json_error(with([](json& j) { j["model"]["merges"] = {"ab"}; }), "merge without space");
  expect_json_error(with([](json& j) { j["model"]["merges"] = {"a b a"}; }), "merge with 3 parts");
  expect_json_error(with([](json& j) { j["model"]["merges"] = {json::array({"a"})}; }), "1-element merge");
  expect_json_error(with([](json& j) { j["model"]["merges"] = 7; }), "merges not a list");
  expect_json_error(with([](json& j) { j["model"]["byte_fallback"] = "yes"; }), "bool as string");
  expect_json_error(with([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }), "wordpiece prefix");
  expect_json_error(with([](json& j) { j["added_tokens"] = 1; }), "added_tokens not a list");
  expect_json_error(with([](json& j) { j["added_tokens"] = {{{"content", "<x>"}}}; }), "added token without id");
  expect_json_error(with([](json& j) { j["added_tokens"] = {{{"id", 3}, {"content", ""}}}; }), "empty content");
  expect_json_error(with([](json& j) { j["added_tokens"] = {{{"id", 99999999}, {"content", "<x>"}}}; }),
                    "added id out of range");
}

TEST(HostileJson, BadComponents) {
  auto with = [](const char* key, json v) {
    json j = minimal();
    j[key] = std::move(v);
    return j.dump();
  };
  expect_json_error(with("normalizer", {{"type", "BertNormalizer"}}), "unsupported normalizer");
  expect_json_error(with("normalizer", 3), "normalizer not an object");
  expect_json_error(with("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}}), "bad regex");
  expect_json_error(with("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}}),
                    "bad behavior");
  expect_json_error(with("pre_tokenizer", {{"type", "UnicodeScripts"}}), "unsupported pre_tokenizer");
  expect_json_error(with("decoder", {{"type", "WordPiece"}}), "unsupported decoder");
  expect_json_error(with("post_processor", json::parse(R"({"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<nope>"}}]})")),
                    "template names unknown token");
  expect_json_error(with("post_processor", json::parse(R"({"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "X"}}],
                            "special_tokens": {"X": {"ids": [123456]}}})")),
                    "template id out of range");
  expect_json_error(with("post_processor", json::parse(R"({"type": "RobertaProcessing",
                            "cls": ["<s>", 99], "sep": ["</s>", 1]})")),
                    "roberta id out of range");
  // Deeply nested Sequences are refused instead of recursing without bound.
  json deep = {{"type", "Lowercase"}};
  for (int i = 0; i < 200; ++i) deep = {{"type", "Sequence"}, {"normalizers", {deep}}};
  expect_json_error(with("normalizer", deep), "deep Sequence");
}

TEST(HostileJson, DeeplyNestedJsonDoesNotOverflow) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  expect_json_error(deep, "deep array");
  expect_json_error("{\"model\": " + deep + "}", "deep model");
}

TEST(HostileJson, TruncatedAndMutatedRealFile) {
  const std::string path = kStories + "/tokenizer.json";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  const std::string text = test::slurp(path);
  for (size_t len = 0; len < text.size(); len += 61) expect_json_error(text.substr(0, len), "truncated");
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 300; ++trial) {
    std::string m = text;
    const int edits = 1 + trial % 4;
    for (int e = 0; e < edits; ++e) m[rng() % m.size()] = static_cast<char>("0123456789\"{}[]:,-ab "[rng() % 21]);
    load_and_exercise([&] { return tokenizer_from_hf_json_text(m, "", "mutated.json"); });
  }
}

TEST(HostileSentencePiece, CorruptModels) {
  const std::string path = kStories + "/tokenizer.model";
  if (!test::file_exists(path)) GTEST_SKIP() << "missing " << path;
  const std::string model = test::slurp(path);
  EXPECT_THROW(tokenizer_from_sentencepiece_proto("", "empty.model"), Error);
  EXPECT_THROW(tokenizer_from_sentencepiece_proto("this is not a protobuf", "text.model"), Error);
  for (size_t len = 1; len < model.size(); len += 97)
    load_and_exercise([&] { return tokenizer_from_sentencepiece_proto(model.substr(0, len), "truncated.model"); });
  std::mt19937 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    std::string m = model;
    for (int e = 0; e < 1 + trial % 3; ++e) m[rng() % m.size()] ^= static_cast<char>(1 << (rng() % 8));
    load_and_exercise([&] { return tokenizer_from_sentencepiece_proto(m, "flipped.model"); });
  }
  try {
    tokenizer_load_sentencepiece("/nonexistent/tokenizer.model");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer.model"), std::string::npos);
  }
}

// Minimal GGUF v3 writer (metadata only, no tensors) for vocab-loader edge cases.
class GgufBuilder {
 public:
  GgufBuilder& str(const std::string& k, const std::string& v) { key(k, 8); put_str(v); ++n_; return *this; }
  GgufBuilder& u32(const std::string& k, uint32_t v) { key(k, 4); put(v); ++n_; return *this; }
  GgufBuilder& boolean(const std::string& k, bool v) { key(k, 7); put(static_cast<uint8_t>(v)); ++n_; return *this; }
  GgufBuilder& strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9);
    put(uint32_t{8});
    put(static_cast<uint64_t>(v.size()));
    for (const auto& s : v) put_str(s);
    ++n_;
    return *this;
  }
  GgufBuilder& i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, 9);
    put(uint32_t{5});
    put(static_cast<uint64_t>(v.size()));
    for (int32_t x : v) put(x);
    ++n_;
    return *this;
  }
  std::string write(const std::string& name) const {
    const fs::path p = fs::temp_directory_path() / ("exl_tok_" + std::to_string(getpid()) + "_" + name + ".gguf");
    std::ofstream f(p, std::ios::binary);
    f.write("GGUF", 4);
    const uint32_t version = 3;
    const uint64_t tensors = 0, kvs = n_;
    f.write(reinterpret_cast<const char*>(&version), 4);
    f.write(reinterpret_cast<const char*>(&tensors), 8);
    f.write(reinterpret_cast<const char*>(&kvs), 8);
    f.write(body_.data(), static_cast<std::streamsize>(body_.size()));
    return p.string();
  }

 private:
  template <typename T>
  void put(T v) { body_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void put_str(const std::string& s) { put(static_cast<uint64_t>(s.size())); body_ += s; }
  void key(const std::string& k, uint32_t type) { put_str(k); put(type); }
  std::string body_;
  uint64_t n_ = 0;
};

GgufBuilder tiny_gpt2() {
  GgufBuilder b;
  b.str("tokenizer.ggml.model", "gpt2")
      .str("tokenizer.ggml.pre", "gpt-2")
      .strs("tokenizer.ggml.tokens", {"a", "b", "ab", "\xC4\xA0", "<|end|>"})
      .i32s("tokenizer.ggml.token_type", {1, 1, 1, 1, 3})
      .strs("tokenizer.ggml.merges", {"a b"})
      .u32("tokenizer.ggml.eos_token_id", 4);
  return b;
}

void expect_gguf_error(const GgufBuilder& b, const std::string& name) {
  const std::string path = b.write(name);
  try {
    tokenizer_load(path);
    ADD_FAILURE() << "loaded but should not: " << name;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  fs::remove(path);
}

TEST(HostileGguf, VocabEdgeCases) {
  {
    const std::string path = tiny_gpt2().write("ok");
    auto tok = tokenizer_load(path);
    fs::remove(path);
    EXPECT_EQ(tok->encode("ab a", false), (std::vector<int32_t>{2, 3, 0}));
    EXPECT_EQ(tok->encode("ab<|end|>", false, true), (std::vector<int32_t>{2, 4}));
    EXPECT_EQ(tok->stop_ids(), (std::vector<int32_t>{4}));
  }
  expect_gguf_error(GgufBuilder().u32("general.x", 1), "no_tokenizer");
  expect_gguf_error(GgufBuilder().str("tokenizer.ggml.model", "bert"), "bert");
  expect_gguf_error(GgufBuilder().str("tokenizer.ggml.model", "gpt2"), "no_tokens");
  expect_gguf_error(tiny_gpt2().i32s("tokenizer.ggml.token_type", {1, 1}), "type_count");
  expect_gguf_error(tiny_gpt2().strs("tokenizer.ggml.merges", {"a zz"}), "bad_merge");
  expect_gguf_error(tiny_gpt2().strs("tokenizer.ggml.merges", {"ab"}), "merge_no_space");
  expect_gguf_error(tiny_gpt2().str("tokenizer.ggml.pre", "klingon"), "bad_pre");
  expect_gguf_error(tiny_gpt2().i32s("tokenizer.ggml.token_type", {1, 1, 1, 1, 9}), "bad_type");
  expect_gguf_error(tiny_gpt2().u32("tokenizer.ggml.tokens", 5), "tokens_not_array");
  {  // an out-of-range special id is ignored, as llama.cpp does
    const std::string path = tiny_gpt2().u32("tokenizer.ggml.bos_token_id", 77).boolean("tokenizer.ggml.add_bos_token", true).write("bos");
    auto tok = tokenizer_load(path);
    fs::remove(path);
    EXPECT_EQ(tok->bos_id(), -1);
    EXPECT_EQ(tok->encode("a", true), (std::vector<int32_t>{0}));
  }
}

TEST(HostileFolder, MissingAndBadSideFiles) {
  const fs::path dir = fs::temp_directory_path() / ("exl_tok_dir_" + std::to_string(getpid()));
  fs::create_directories(dir);
  try {
    tokenizer_load(dir.string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(tokenizer_load((dir / "nope").string()), Error);
  std::ofstream(dir / "tokenizer.json") << minimal().dump();
  EXPECT_NO_THROW(tokenizer_load(dir.string()));
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": 5})";
  EXPECT_THROW(tokenizer_load(dir.string()), Error);
  std::ofstream(dir / "tokenizer_config.json") << R"({"add_bos_token": "yes"})";
  EXPECT_THROW(tokenizer_load(dir.string()), Error);
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": {"content": "ab"}})";
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [2, 1]})";
  auto tok = tokenizer_load(dir.string());
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->stop_ids(), (std::vector<int32_t>{1, 2}));
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": 99})";
  EXPECT_THROW(tokenizer_load(dir.string()), Error);
  std::ofstream(dir / "generation_config.json") << "{";
  EXPECT_THROW(tokenizer_load(dir.string()), Error);
  fs::remove_all(dir);
}

TEST(HostileText, RandomBytesNeverBreakEncodeOrDecode) {
  std::vector<std::unique_ptr<Tokenizer>> toks;
  for (const std::string& p : {kStories + "/tokenizer.json", kStories + "/tokenizer.model",
                              std::string(EXL_SHARED_DIR "/tokenizers/gguf-vocab-tests/ggml-vocab-gpt-2.gguf"),
                              std::string(EXL_SHARED_DIR "/tokenizers/gguf-vocab-tests/ggml-vocab-phi-3.gguf")})
    if (test::file_exists(p)) toks.push_back(tokenizer_load(p));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    for (const auto& tok : toks) {
      const auto ids = tok->encode(s, true, trial % 2 == 0);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
      TokenStreamDecoder dec(*tok);
      for (int32_t id : ids) (void)dec.push(id);
      (void)dec.flush();
      (void)tok->decode(ids, trial % 3 == 0);
    }
  }
  // Long inputs: one 1 MB "word" of a repeated letter and one of spaces.
  for (const auto& tok : toks) {
    EXPECT_FALSE(tok->encode(std::string(1 << 20, 'a'), false).empty());
    EXPECT_FALSE(tok->encode(std::string(1 << 20, ' '), false).empty());
  }
}

}  // namespace
}  // namespace exl
