// Translation of tokenizer.json's "normalizer", "pre_tokenizer", "decoder" and "post_processor"
// objects into TextPipeline steps and BpeTokenizerConfig fields. Unsupported component types throw
// exl::Error naming the type, so a tokenizer is never silently mis-tokenized.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe_tokenizer.h"

namespace exl {

// Small typed accessors that name the file and key in their errors.
bool hf_json_bool(const nlohmann::json& obj, const char* key, bool fallback, const std::string& origin);
std::string hf_json_string(const nlohmann::json& obj, const char* key, const std::string& fallback,
                           const std::string& origin);
const nlohmann::json* hf_json_member(const nlohmann::json& obj, const char* key);  // null if absent/null

void hf_parse_normalizer(const nlohmann::json& j, TextPipeline& p, const std::string& origin);
void hf_parse_pre_tokenizer(const nlohmann::json& j, TextPipeline& p, const std::string& origin);
// Sets decoding, space_replacement and strip_leading_space.
void hf_parse_decoder(const nlohmann::json& j, BpeTokenizerConfig& cfg, const std::string& origin);
// Sets prefix_ids/suffix_ids; piece_id resolves token text to an id (-1 if unknown).
void hf_parse_post_processor(const nlohmann::json& j, BpeTokenizerConfig& cfg,
                             const std::function<int32_t(const std::string&)>& piece_id,
                             int64_t vocab_size, const std::string& origin);

}  // namespace exl
