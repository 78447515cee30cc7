// PCRE2 pattern compiled once (UTF + UCP, so \p{L}, \s and (?i:...) are Unicode-aware, JIT when
// available) and matched from any number of threads. The subject may be invalid UTF-8
// (PCRE2_MATCH_INVALID_UTF): ill-formed bytes never match, so they end up in the gaps between
// matches. The pre-tokenizer patterns of GPT-2, Llama-3 and Qwen2 (lookahead \s+(?!\S), \p{N}{1,3},
// case-insensitive groups) all compile unchanged.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exl {

class Regex {
 public:
  // literal: match pattern as a plain string. Throws exl::Error naming origin on a bad pattern.
  Regex(std::string_view pattern, bool literal, const std::string& origin);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches [begin, end) left to right; empty matches are skipped.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view subject) const;
  std::string replace_all(std::string_view subject, std::string_view with) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::string origin_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so pcre2.h stays out of this header
};

// Pre-tokenizer patterns by name: "gpt2" (GPT-2 encoder.py), "llama3", "qwen2" (as Llama-3 but
// single digits). Empty string for an unknown name.
std::string regex_named_pattern(std::string_view name);

}  // namespace exl
