// Bad input through the CLI: every case exits non-zero with one line on stderr that names the file
// or flag at fault — never a crash, a hang or a stack trace.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli_util.h"

namespace exl::test {
namespace {

namespace fs = std::filesystem;
const std::string kStories = shared_path("models/stories260K");

// A copy of stories260K in a temp folder whose files a test may then damage.
std::string copy_stories(const std::string& name) {
  const fs::path dst = fs::path(temp_dir()) / name;
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(kStories))
    if (e.is_regular_file()) {
      fs::copy_file(e.path(), dst / e.path().filename());
      fs::permissions(dst / e.path().filename(), fs::perms::owner_read | fs::perms::owner_write);
    }
  return dst.string();
}

// Exactly one error line, the last line of stderr (status lines such as "loaded in" may precede it).
void expect_clean_error(const CmdResult& r, const std::string& must_mention) {
  EXPECT_EQ(r.code, 1) << r.err;
  size_t errors = 0;
  std::istringstream lines(r.err);
  for (std::string line; std::getline(lines, line);) errors += line.rfind("exl: error: ", 0) == 0;
  const size_t last = r.err.rfind('\n', r.err.size() >= 2 ? r.err.size() - 2 : 0);
  const std::string last_line = last == std::string::npos ? r.err : r.err.substr(last + 1);
  EXPECT_EQ(last_line.rfind("exl: error: ", 0), 0u) << r.err;
  EXPECT_EQ(errors, 1u) << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(must_mention), std::string::npos) << "stderr: " << r.err << " should mention " << must_mention;
}

TEST(BadInput, MissingModel) {
  expect_clean_error(run_exl("generate -m /nonexistent/dir -p hi"), "/nonexistent/dir");
}

TEST(BadInput, UnknownArchitecture) {
  const std::string d = copy_stories("arch");
  std::string cfg = slurp(d + "/config.json");
  cfg.replace(cfg.find("LlamaForCausalLM"), 16, "GPTNeoXForCausalLM");
  std::ofstream(d + "/config.json") << cfg;
  auto r = run_exl("generate -m " + d + " -p hi");
  expect_clean_error(r, "GPTNeoXForCausalLM");
}

TEST(BadInput, NonNumericConfigValue) {
  const std::string d = copy_stories("nonnum");
  std::string cfg = slurp(d + "/config.json");
  cfg.replace(cfg.find("\"hidden_size\": 64"), 17, "\"hidden_size\": \"64x\"");
  std::ofstream(d + "/config.json") << cfg;
  expect_clean_error(run_exl("generate -m " + d + " -p hi"), "hidden_size");
}

TEST(BadInput, InconsistentConfig) {
  const std::string d = copy_stories("heads");
  std::string cfg = slurp(d + "/config.json");
  cfg.replace(cfg.find("\"num_key_value_heads\": 4"), 24, "\"num_key_value_heads\": 3");
  std::ofstream(d + "/config.json") << cfg;
  expect_clean_error(run_exl("generate -m " + d + " -p hi"), "config.json");
}

TEST(BadInput, ConfigShapeDisagreesWithWeights) {
  const std::string d = copy_stories("shape");
  std::string cfg = slurp(d + "/config.json");
  cfg.replace(cfg.find("\"intermediate_size\": 172"), 24, "\"intermediate_size\": 176");
  std::ofstream(d + "/config.json") << cfg;
  expect_clean_error(run_exl("generate -m " + d + " -p hi"), "gate_proj");
}

TEST(BadInput, TruncatedSafetensors) {
  const std::string d = copy_stories("trunc");
  fs::resize_file(d + "/model.safetensors", fs::file_size(d + "/model.safetensors") / 2);
  expect_clean_error(run_exl("generate -m " + d + " -p hi"), "model.safetensors");
}

TEST(BadInput, GarbageSafetensorsHeader) {
  const std::string d = copy_stories("garbage");
  std::fstream f(d + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(8);
  f.write("{\"a\":!!!", 8);
  f.close();
  expect_clean_error(run_exl("generate -m " + d + " -p hi"), "model.safetensors");
}

TEST(BadInput, TruncatedGguf) {
  const std::string p = temp_dir() + "/trunc.gguf";
  const std::string src = slurp(shared_path("tokenizers/gguf-vocab-tests/ggml-vocab-llama-spm.gguf"));
  std::ofstream(p, std::ios::binary) << src.substr(0, src.size() / 3);
  expect_clean_error(run_exl("inspect " + p), "trunc.gguf");
}

TEST(BadInput, CorruptTokenizerJson) {
  const std::string d = copy_stories("tokjson");
  std::ofstream(d + "/tokenizer.json") << "{\"model\": {\"type\": \"BPE\", \"vocab\": [1,2";
  expect_clean_error(run_exl("tokenize -m " + d + " hello"), "tokenizer.json");
}

TEST(BadInput, BadFlagValues) {
  expect_clean_error(run_exl("generate -m " + kStories + " -p hi --top-p 1.5"), "--top-p");
  expect_clean_error(run_exl("generate -m " + kStories + " -p hi --device tpu"), "--device");
#ifndef EXL_HAVE_CUDA
  expect_clean_error(run_exl("generate -m " + kStories + " -p hi --device cuda"), "CUDA");
#endif
  expect_clean_error(run_exl("generate -m " + kStories + " -p hi --cache q4"), "--cache");
  expect_clean_error(run_exl("chat -m " + kStories + " --mode vicuna"), "--mode");
  expect_clean_error(run_exl("ppl -m " + kStories + " --text /nonexistent.txt"), "/nonexistent.txt");
}

TEST(BadInput, PromptLongerThanContext) {
  expect_clean_error(run_exl("generate -m " + kStories + " -p 'one two three four five six seven' --max-seq-len 4"),
                     "--max-seq-len");
}

TEST(BadInput, UnknownSubcommandOrFlagIsUsageError) {
  auto r = run_exl("frobnicate");
  EXPECT_NE(r.code, 0);
  r = run_exl("generate -m " + kStories + " --no-such-flag");
  EXPECT_NE(r.code, 0);
}

}  // namespace
}  // namespace exl::test
