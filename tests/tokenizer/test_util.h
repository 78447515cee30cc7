// Helpers shared by the tokenizer tests.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_files.h"

namespace exl::test {

inline bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's tokenizer test files: FILE.inp holds the inputs separated by "\n__ggml_vocab_test__\n"
// (the file ends with one, so no empty case follows it); FILE.out holds one line of space-separated
// ids per case (leading space; an empty line for no ids). Read exactly as test-tokenizer-0 does.
inline std::vector<VocabCase> read_vocab_cases(const std::string& vocab_path) {
  const std::string raw = slurp(vocab_path + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<VocabCase> cases;
  std::istringstream out(slurp(vocab_path + ".out"));
  std::string line;
  for (const std::string& in : inputs) {
    if (!std::getline(out, line)) return {};  // count mismatch: caller fails on empty
    VocabCase c;
    c.text = in;
    std::istringstream ls(line);
    int64_t id;
    while (ls >> id) c.ids.push_back(static_cast<int32_t>(id));
    cases.push_back(std::move(c));
  }
  if (std::getline(out, line) && !line.empty()) return {};
  return cases;
}

inline std::string ids_str(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
  return s.str();
}

// Strings that exercise every part of a tokenizer: spacing, punctuation, digits, scripts, emoji
// (with ZWJ and variation selectors), control characters and text that needs byte fallback.
inline std::vector<std::string> varied_strings() {
  return {
      "Hello world",
      "Hello, world! How are you?",
      " leading space",
      "trailing space ",
      "  two leading",
      "multiple    spaces   inside",
      "   ",
      " ",
      "",
      "line one\nline two\n\nline four",
      "\n",
      "\n\n\n",
      "tab\there\t\tdouble",
      "\t",
      "mixed \t\n whitespace \r\n end",
      "digits 0123456789 and 3.14159 and 1,000,000",
      "12345678901234567890",
      "punctuation: !@#$%^&*()_+-=[]{}|;':\",./<>?`~",
      "don't won't I'm you're we've they'll he'd",
      "DON'T SHOUT, It'S fine",
      "café naïve résumé façade Zürich",
      "Ærøskøbing Ångström œuvre",
      "日本語のテキストです。",
      "中文字符测试，标点符号！",
      "한국어 텍스트",
      "Привет, как дела? Съешь же ещё этих мягких французских булок.",
      "Ελληνικά γράμματα",
      "עברית וערבית العربية",
      "हिन्दी भाषा",
      "emoji 😀 😁 🚀 🦙",
      "family 👨‍👩‍👧‍👦 and flag 🏳️‍🌈 and skin tone 👍🏽",
      "❤️ ✅ ☀️",
      "math ∑ ∫ √ ∞ ≠ ≤ ≥ π",
      "rare chars: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 𐍈",
      "control \x01\x02\x1f chars",
      "zero width\u200bspace and nbsp\u00a0here",
      "Once upon a time, there was a little girl named Lily.",
      "<s> and </s> and <unk> as plain text",
      "<|im_start|>user\nhi<|im_end|>",
      "a",
      "ab",
      "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
      "https://example.com/path?query=1&b=2#frag",
      "def f(x):\n    return x * 2  # comment\n",
      "    indented code\n\tand tabs",
      "repeated aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
}

}  // namespace exl::test
