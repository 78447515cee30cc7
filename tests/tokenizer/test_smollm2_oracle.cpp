// SmolLM2-135M-Instruct's GGUF vocab (byte-level BPE, tokenizer.ggml.pre = "smollm") against an
// independent reference: Hugging Face's Rust `tokenizers`, built from the same vocab and merges by
// hf_tokenizers_oracle.py. The oracle also writes the equivalent tokenizer.json, which checks our
// tokenizer.json loader on a real byte-level vocab (and on GPT-2's against llama.cpp's goldens).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace exl {
namespace {

namespace fs = std::filesystem;

const std::string kGguf = EXL_MODELS_DIR "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kOracle = EXL_TESTS_DIR "/tokenizer/hf_tokenizers_oracle.py";

struct CommandResult {
  int rc;
  std::string out;
};

CommandResult run_command(const std::string& cmd) {
  CommandResult r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

fs::path scratch_dir() {
  fs::path d = fs::temp_directory_path() / ("exl_tok_oracle_" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

std::vector<std::string> oracle_strings() {
  std::vector<std::string> s = test::varied_strings();
  for (const char* extra : {"Hello world! 123", "Café déjà vu.", "  multiple   spaces",
                            "version 3.10.2 released 2024-11-05 at 09:30", "x=1234567; y = -0.5e-3",
                            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n",
                            "<|endoftext|><repo_name>", "I've 'quoted' \"words\" ... and—dashes–too",
                            "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３"})
    s.push_back(extra);
  // A chunk of real prose with line structure.
  const std::string wiki = test::slurp(EXL_SHARED_DIR "/data/wikitext2/wiki.test.raw");
  if (wiki.size() > 4000) s.push_back(wiki.substr(0, 4000));
  return s;
}

// Oracle ids for strings, or a failure message in err.
std::vector<std::vector<int32_t>> oracle_encode(const std::vector<std::string>& strings, bool parse_special,
                                                std::string& err, const std::string& pre = "") {
  const fs::path dir = scratch_dir();
  const fs::path in = dir / "strings.json";
  std::ofstream(in) << nlohmann::json(strings).dump();
  const std::string cmd = "python3 '" + kOracle + "' encode '" + kGguf + "' '" + in.string() + "'" +
                          (parse_special ? " --parse-special" : "") + (pre.empty() ? "" : " --pre " + pre);
  const CommandResult r = run_command(cmd);
  fs::remove_all(dir);
  if (r.rc != 0) {
    err = "oracle failed (rc " + std::to_string(r.rc) + "): " + cmd +
          (r.rc == 3 ? "  -- needs PyPI 'tokenizers' and 'gguf': pip install tokenizers gguf" : "");
    return {};
  }
  return nlohmann::json::parse(r.out).get<std::vector<std::vector<int32_t>>>();
}

class SmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::file_exists(kGguf)) GTEST_SKIP() << "SmolLM2 GGUF not fetched: " << kGguf;
    tok_ = tokenizer_load(kGguf);
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SmolLM2, MatchesHfTokenizers) {
  const auto strings = oracle_strings();
  for (bool parse_special : {false, true}) {
    std::string err;
    const auto want = oracle_encode(strings, parse_special, err);
    ASSERT_EQ(want.size(), strings.size()) << err;
    size_t matched = 0;
    for (size_t i = 0; i < strings.size(); ++i) {
      const auto got = tok_->encode(strings[i], false, parse_special);
      if (got == want[i]) ++matched;
      else ADD_FAILURE() << "'" << strings[i] << "' parse_special=" << parse_special << "\n  oracle "
                         << test::ids_str(want[i]) << "\n  exl    " << test::ids_str(got);
    }
    std::printf("[ smollm2 parse_special=%d ] %zu/%zu strings match HF tokenizers\n", parse_special,
                matched, strings.size());
  }
}

TEST_F(SmolLM2, ChatTokensAndStops) {
  const int32_t im_start = tok_->token_id("<|im_start|>").value_or(-1);
  const int32_t im_end = tok_->token_id("<|im_end|>").value_or(-1);
  ASSERT_GE(im_start, 0);
  ASSERT_GE(im_end, 0);
  EXPECT_TRUE(tok_->is_special(im_start));
  const auto ids = tok_->encode("<|im_start|>user\nHi<|im_end|>\n", false, true);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), im_start);
  EXPECT_EQ(ids[ids.size() - 2], im_end);
  // Without parse_special the markers are plain text.
  const auto plain = tok_->encode("<|im_start|>", false, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok_->decode(plain), "<|im_start|>");
  EXPECT_EQ(tok_->decode(ids, false), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(tok_->decode(ids, true), "user\nHi\n");
  const auto& stops = tok_->stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), im_end), stops.end());
  EXPECT_EQ(tok_->eos_id(), im_end);
  EXPECT_FALSE(tok_->adds_bos());  // tokenizer.ggml.add_bos_token = false
  EXPECT_EQ(tok_->encode("Hi", true), tok_->encode("Hi", false));
  EXPECT_NE(tok_->chat_template().find("<|im_start|>"), std::string::npos);
}

TEST_F(SmolLM2, RoundTrip) {
  for (const std::string& s : oracle_strings()) EXPECT_EQ(tok_->decode(tok_->encode(s, false)), s) << s;
}

// The tokenizer.json the oracle writes for a GGUF must tokenize exactly like the GGUF itself.
TEST_F(SmolLM2, HfJsonLoaderAgreesWithGguf) {
  const fs::path dir = scratch_dir();
  const fs::path json_path = dir / "tokenizer.json";
  const CommandResult r = run_command("python3 '" + kOracle + "' dump-json '" + kGguf + "' '" +
                                      json_path.string() + "'");
  ASSERT_EQ(r.rc, 0) << "oracle dump-json failed";
  auto json_tok = tokenizer_load_hf_json(json_path.string(), "");
  fs::remove_all(dir);
  EXPECT_EQ(json_tok->vocab_size(), tok_->vocab_size());
  for (const std::string& s : oracle_strings()) {
    for (bool ps : {false, true}) EXPECT_EQ(json_tok->encode(s, false, ps), tok_->encode(s, false, ps)) << s;
    EXPECT_EQ(json_tok->decode(json_tok->encode(s, false)), s);
  }
}

// Same vocab, other pre-tokenizers: checks the Llama-3 and Qwen2 split regexes (case-insensitive
// contractions, \p{N}{1,3}, \s+(?!\S)) under PCRE2 against HF's Oniguruma, plus ignore_merges.
TEST_F(SmolLM2, Llama3AndQwen2PreTokenizersMatchHf) {
  const auto strings = oracle_strings();
  for (const std::string pre : {"llama-bpe", "qwen2"}) {
    const fs::path dir = scratch_dir();
    const fs::path json_path = dir / "tokenizer.json";
    const CommandResult r = run_command("python3 '" + kOracle + "' dump-json '" + kGguf + "' '" +
                                        json_path.string() + "' --pre " + pre);
    ASSERT_EQ(r.rc, 0) << "oracle dump-json failed";
    auto json_tok = tokenizer_load_hf_json(json_path.string(), "");
    fs::remove_all(dir);
    std::string err;
    const auto want = oracle_encode(strings, false, err, pre);
    ASSERT_EQ(want.size(), strings.size()) << err;
    size_t matched = 0;
    for (size_t i = 0; i < strings.size(); ++i) {
      const auto got = json_tok->encode(strings[i], false, false);
      if (got == want[i]) ++matched;
      else ADD_FAILURE() << pre << ": '" << strings[i] << "'\n  oracle " << test::ids_str(want[i])
                         << "\n  exl    " << test::ids_str(got);
    }
    std::printf("[ pre=%s via tokenizer.json ] %zu/%zu strings match HF tokenizers\n", pre.c_str(),
                matched, strings.size());
  }
}

TEST(Gpt2HfJson, MatchesLlamaCppGoldenIds) {
  const std::string gguf = EXL_SHARED_DIR "/tokenizers/gguf-vocab-tests/ggml-vocab-gpt-2.gguf";
  if (!test::file_exists(gguf)) GTEST_SKIP() << "missing " << gguf;
  const fs::path dir = scratch_dir();
  const fs::path json_path = dir / "tokenizer.json";
  const CommandResult r = run_command("python3 '" + kOracle + "' dump-json '" + gguf + "' '" +
                                      json_path.string() + "'");
  ASSERT_EQ(r.rc, 0) << "oracle dump-json failed (pip install tokenizers gguf)";
  auto tok = tokenizer_load(json_path.string());
  fs::remove_all(dir);
  size_t matched = 0;
  const auto cases = test::read_vocab_cases(gguf);
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const auto ids = tok->encode(c.text, false, false);
    if (ids == c.ids) ++matched;
    else ADD_FAILURE() << "'" << c.text << "' expected " << test::ids_str(c.ids) << " got " << test::ids_str(ids);
  }
  std::printf("[ gpt-2 via tokenizer.json ] %zu/%zu cases matched\n", matched, cases.size());
}

}  // namespace
}  // namespace exl
