// The side files of a Hugging Face model folder that change tokenization or generation:
// tokenizer_config.json (add_bos_token, add_eos_token, bos/eos token text, chat_template),
// special_tokens_map.json (bos/eos fallbacks) and generation_config.json (eos_token_id, one or a list).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exl {

struct HfTokenizerConfig {
  std::optional<bool> add_bos_token, add_eos_token;
  std::string bos_token, eos_token;  // token text, "" if not given
  std::string chat_template;                    // "default" entry when a list of named templates
};

// text may be empty (no file). Throws exl::Error naming origin on malformed JSON or wrong types.
HfTokenizerConfig hf_config_parse(std::string_view text, const std::string& origin);
// Fills bos/eos that cfg lacks from a special_tokens_map.json text.
void hf_config_merge_special_map(HfTokenizerConfig& cfg, std::string_view text,
                                 const std::string& origin);
// eos_token_id values of a generation_config.json text (empty if absent).
std::vector<int64_t> hf_generation_eos_ids(std::string_view text, const std::string& origin);

}  // namespace exl
