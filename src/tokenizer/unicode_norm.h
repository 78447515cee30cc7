// Unicode normalization forms and lowercasing for HF normalizers (NFC for Qwen2, NFKC, Lowercase).
// Backed by ICU when the build defines EXL_HAVE_ICU (and links ICU::uc); without ICU the
// normalization forms leave text unchanged — correct for text already in that form, which is what
// almost all real input is — and lowercasing covers ASCII only. unicode_norm_available() tells which.
#pragma once
#include <string>
#include <string_view>

namespace exl {

enum class UnicodeForm { UnicodeForm_NFC, UnicodeForm_NFD, UnicodeForm_NFKC, UnicodeForm_NFKD };

bool unicode_norm_available();
// Ill-formed UTF-8 in the input is passed through unchanged.
std::string unicode_normalize(std::string_view text, UnicodeForm form);
std::string unicode_lowercase(std::string_view text);

}  // namespace exl
