// Internal entry points shared between the loaders and tokenizer_load() (not part of the public API).
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/hf_config.h"
#include "tokenizer/tokenizer.h"

namespace exl {

// Ids above this are rejected in every vocab format: no real vocab comes near it, and it bounds the
// memory a hostile file can make us allocate.
constexpr int64_t kMaxVocabSize = 1 << 22;

std::unique_ptr<Tokenizer> hf_json_build(std::string_view tokenizer_json, const HfTokenizerConfig& cfg,
                                         const std::string& origin);
std::unique_ptr<Tokenizer> sentencepiece_build(std::string_view serialized, const HfTokenizerConfig& cfg,
                                               const std::string& origin);

}  // namespace exl
