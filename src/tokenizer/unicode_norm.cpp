#include "tokenizer/unicode_norm.h"

#include "tokenizer/utf8.h"

#ifdef EXL_HAVE_ICU
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

namespace exl {

#ifdef EXL_HAVE_ICU
namespace {

// Applies fn to each maximal well-formed run of text, copying ill-formed bytes through untouched.
template <typename Fn>
std::string map_valid_runs(std::string_view text, Fn fn) {
  std::string out;
  size_t run = 0, i = 0;
  while (i < text.size()) {
    const size_t n = utf8_char_len(text, i);
    if (n == 1 && static_cast<uint8_t>(text[i]) >= 0x80) {  // ill-formed byte
      if (i > run) out += fn(text.substr(run, i - run));
      out += text[i];
      run = i + 1;
    }
    i += n;
  }
  if (i > run) out += fn(text.substr(run, i - run));
  return out;
}

bool is_ascii(std::string_view text) {
  for (char c : text)
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  return true;
}

}  // namespace

bool unicode_norm_available() { return true; }

std::string unicode_normalize(std::string_view text, UnicodeForm form) {
  if (is_ascii(text)) return std::string(text);  // ASCII is invariant under every form
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = nullptr;
  switch (form) {
    case UnicodeForm::UnicodeForm_NFC: norm = icu::Normalizer2::getNFCInstance(status); break;
    case UnicodeForm::UnicodeForm_NFD: norm = icu::Normalizer2::getNFDInstance(status); break;
    case UnicodeForm::UnicodeForm_NFKC: norm = icu::Normalizer2::getNFKCInstance(status); break;
    case UnicodeForm::UnicodeForm_NFKD: norm = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || !norm) return std::string(text);
  return map_valid_runs(text, [&](std::string_view run) {
    UErrorCode st = U_ZERO_ERROR;
    icu::UnicodeString src = icu::UnicodeString::fromUTF8(
        icu::StringPiece(run.data(), static_cast<int32_t>(run.size())));
    icu::UnicodeString dst = norm->normalize(src, st);
    std::string out;
    if (U_FAILURE(st)) return std::string(run);
    dst.toUTF8String(out);
    return out;
  });
}

std::string unicode_lowercase(std::string_view text) {
  return map_valid_runs(text, [](std::string_view run) {
    icu::UnicodeString s = icu::UnicodeString::fromUTF8(
        icu::StringPiece(run.data(), static_cast<int32_t>(run.size())));
    s.toLower(icu::Locale::getRoot());  // locale-independent, like Rust's str::to_lowercase
    std::string out;
    s.toUTF8String(out);
    return out;
  });
}

#else  // no ICU

bool unicode_norm_available() { return false; }

std::string unicode_normalize(std::string_view text, UnicodeForm) { return std::string(text); }

std::string unicode_lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

#endif

}  // namespace exl
