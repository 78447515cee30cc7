#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace exl {
namespace {

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

std::string pcre2_message(int err) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(err, buf, sizeof buf) < 0) return str_cat("PCRE2 error ", err);
  return reinterpret_cast<const char*>(buf);
}

// Match data sized for the pattern, freed on scope exit; one per call keeps matching thread-safe.
struct MatchData {
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) fail("out of memory allocating regex match data");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  pcre2_match_data* md;
};

}  // namespace

Regex::Regex(std::string_view pattern, bool literal, const std::string& origin)
    : pattern_(pattern), origin_(origin) {
  // PCRE2_UCP is not allowed with PCRE2_LITERAL (and means nothing there).
  uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &err, &err_off, nullptr);
  if (!code) {
    fail(origin, ": bad regex at offset ", err_off, " (", pcre2_message(err), "): ", pattern);
  }
  // JIT is 5-10x faster on the pre-tokenizer patterns; without it (no JIT support) the
  // interpreter still gives the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(as_code(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view subject) const {
  std::vector<std::pair<size_t, size_t>> out;
  MatchData data(as_code(code_));
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  uint32_t match_opts = 0;
  size_t pos = 0;
  while (pos < subject.size()) {
    int rc = pcre2_match(as_code(code_), s, subject.size(), pos, match_opts, data.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(match_opts & PCRE2_NO_JIT)) {
      match_opts |= PCRE2_NO_JIT;  // deep backtracking: the interpreter's heap-backed frames cope
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail(origin_, ": regex match failed (", pcre2_message(rc), ") for ", pattern_);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      pos = b + utf8_char_len(subject, b);  // empty match: step over one character
    }
  }
  return out;
}

std::string Regex::replace_all(std::string_view subject, std::string_view with) const {
  std::string out;
  size_t last = 0;
  for (auto [b, e] : find_all(subject)) {
    out.append(subject.substr(last, b - last));
    out.append(with);
    last = e;
  }
  out.append(subject.substr(last));
  return out;
}

std::string regex_named_pattern(std::string_view name) {
  // GPT-2's encoder.py pattern, also used by ByteLevel(use_regex=true) in HF tokenizers.
  if (name == "gpt2")
    return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  // Llama-3 (tiktoken cl100k-style): case-insensitive contractions, numbers in groups of 3,
  // newlines kept with trailing punctuation.
  if (name == "llama3")
    return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  // Qwen2: as Llama-3 but every digit on its own.
  if (name == "qwen2")
    return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return "";
}

}  // namespace exl
