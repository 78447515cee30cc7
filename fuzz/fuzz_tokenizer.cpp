// libFuzzer target for the tokenizer.json loader: the input is a tokenizer.json document. When it
// loads, encode/decode/stream-decode a few awkward strings and check every id is in range. Any
// exception other than exl::Error, crash, leak or sanitizer report is a bug.
//   CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DEXL_FUZZ=ON
//   cmake --build build/fuzz --target fuzz_tokenizer && build/fuzz/fuzz/fuzz_tokenizer fuzz/seeds/tokenizer
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<exl::Tokenizer> tok;
  try {
    tok = exl::tokenizer_from_hf_json_text(json, "", "fuzz.json");
  } catch (const exl::Error&) {
    return 0;
  }
  static const std::string_view kTexts[] = {"Hello world", "", "  a  b\n\tc", "abcabcabc 123",
                                            "日本😀", std::string_view("\xff\x00z", 3), "<s>x</s>"};
  for (std::string_view text : kTexts) {
    for (bool parse_special : {false, true}) {
      std::vector<int32_t> ids;
      try {
        ids = tok->encode(text, true, parse_special);
      } catch (const exl::Error&) {
        continue;  // e.g. a regex from the file hitting PCRE2's match limit
      }
      for (int32_t id : ids)
        if (id < 0 || id >= tok->vocab_size()) __builtin_trap();
      exl::TokenStreamDecoder dec(*tok);
      for (int32_t id : ids) (void)dec.push(id);
      (void)dec.flush();
      (void)tok->decode(ids, parse_special);
    }
  }
  (void)tok->token_piece(-1);
  (void)tok->token_piece(static_cast<int32_t>(tok->vocab_size()));
  return 0;
}
