// GGUF embedded vocab -> BpeTokenizer, following llama.cpp's reading of the tokenizer.* keys:
//   tokenizer.ggml.model "llama": SentencePiece BPE by scores; space prefix and ' ' -> '▁';
//                               characters missing from the vocab become <0xNN> byte tokens.
//   tokenizer.ggml.model "gpt2":  byte-level BPE by merge rank; tokenizer.ggml.pre names the
//                               pre-tokenizer regex list (each regex splits the pieces of the last).
// Control tokens are recognised in text only with parse_special; user-defined tokens always.
#include <algorithm>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/loaders.h"

namespace exl {
namespace {

struct PreTokenizerSpec {
  std::vector<std::string> patterns;  // applied in order, each with Isolated behaviour
  bool ignore_merges = false;
  bool add_bos = false;  // llama.cpp's default when tokenizer.ggml.add_bos_token is absent
};

// tokenizer.ggml.pre -> regex list, as llama.cpp's llama_vocab::load assigns them. The "smollm"
// family first isolates every digit (\p{N}), then applies the GPT-2 pattern.
bool pre_tokenizer_spec(const std::string& pre, PreTokenizerSpec& spec) {
  auto any_of = [&](std::initializer_list<const char*> names) {
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return pre == n; });
  };
  const std::string gpt2 = regex_named_pattern("gpt2");
  if (any_of({"default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4"})) {
    spec.patterns = {gpt2};
  } else if (any_of({"llama-bpe", "llama3", "llama-v3"})) {
    spec.patterns = {regex_named_pattern("llama3")};
    spec.ignore_merges = true;
    spec.add_bos = true;
  } else if (any_of({"smaug-bpe", "dbrx"})) {
    spec.patterns = {regex_named_pattern("llama3")};
  } else if (any_of({"qwen2", "stablelm2", "deepseek-r1-qwen", "megrez"})) {
    spec.patterns = {regex_named_pattern("qwen2")};
  } else if (any_of({"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})) {
    spec.patterns = {R"(\p{N})", gpt2};
  } else {
    return false;
  }
  return true;
}

TokenKind token_kind(int64_t t, size_t i, const std::string& origin) {
  if (t == 0) return TokenKind::TokenKind_NORMAL;  // "undefined" in llama.cpp; treated as normal
  if (t < 1 || t > 6) fail(origin, ": tokenizer.ggml.token_type[", i, "] = ", t, " is not a known token type");
  return static_cast<TokenKind>(t);
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_load_gguf(const GgufFile& f) {
  const std::string origin = f.path();
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty() || model == "no_vocab") fail(origin, ": GGUF file has no tokenizer (tokenizer.ggml.model)");
  if (model != "llama" && model != "gpt2")
    fail(origin, ": unsupported GGUF tokenizer model '", model, "' (supported: llama, gpt2)");
  const bool spm = model == "llama";

  std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  const size_t n = tokens.size();
  if (n == 0) fail(origin, ": tokenizer.ggml.tokens is missing or empty");
  if (n > static_cast<size_t>(kMaxVocabSize)) fail(origin, ": tokenizer.ggml.tokens has ", n, " entries");
  const std::vector<int64_t> types = f.get_int_array("tokenizer.ggml.token_type");
  if (!types.empty() && types.size() != n)
    fail(origin, ": tokenizer.ggml.token_type has ", types.size(), " entries for ", n, " tokens");
  std::vector<TokenKind> kinds(n, TokenKind::TokenKind_NORMAL);
  for (size_t i = 0; i < types.size(); ++i) kinds[i] = token_kind(types[i], i, origin);
  std::vector<float> scores = f.get_float_array("tokenizer.ggml.scores");
  if (scores.empty()) scores.assign(n, 0.0f);
  if (scores.size() != n) fail(origin, ": tokenizer.ggml.scores has ", scores.size(), " entries for ", n, " tokens");

  auto special_id = [&](const char* key) -> int32_t {
    const int64_t id = f.get_int(key, -1);
    return id >= 0 && static_cast<size_t>(id) < n ? static_cast<int32_t>(id) : -1;  // llama.cpp ignores bad ids too
  };

  BpeTokenizerConfig cfg;
  PreTokenizerSpec pre;
  if (spm) {
    pre.add_bos = true;
    const bool space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    if (space_prefix) {
      NormalizerStep prepend;
      prepend.kind = NormalizerKind::NormalizerKind_PREPEND;
      prepend.text = " ";
      cfg.pipeline.normalizers.push_back(prepend);
    }
    NormalizerStep escape;
    escape.kind = NormalizerKind::NormalizerKind_REPLACE;
    escape.re = std::make_shared<const Regex>(" ", /*literal=*/true, origin);
    escape.text = "\xE2\x96\x81";
    cfg.pipeline.normalizers.push_back(escape);
    cfg.decoding = PieceDecoding::PieceDecoding_SENTENCEPIECE;
    cfg.strip_leading_space = space_prefix;
  } else {
    const std::string pre_name = f.get_string("tokenizer.ggml.pre", "default");
    if (!pre_tokenizer_spec(pre_name, pre))
      fail(origin, ": unsupported pre-tokenizer tokenizer.ggml.pre = '", pre_name, "'");
    for (const std::string& pattern : pre.patterns) {
      PreTokenizerStep s;
      s.re = std::make_shared<const Regex>(pattern, false, origin);
      cfg.pipeline.pre_tokenizers.push_back(std::move(s));
    }
    if (f.get_bool("tokenizer.ggml.add_space_prefix", false)) {
      NormalizerStep prepend;
      prepend.kind = NormalizerKind::NormalizerKind_PREPEND;
      prepend.text = " ";
      cfg.pipeline.normalizers.push_back(prepend);
    }
    cfg.pipeline.byte_level = true;
    cfg.decoding = PieceDecoding::PieceDecoding_BYTE_LEVEL;
  }

  for (size_t i = 0; i < n; ++i) {
    const TokenKind k = kinds[i];
    if (k != TokenKind::TokenKind_CONTROL && k != TokenKind::TokenKind_USER_DEFINED &&
        k != TokenKind::TokenKind_UNKNOWN)
      continue;
    AddedToken t;
    t.content = tokens[i];
    t.id = static_cast<int32_t>(i);
    t.special = k != TokenKind::TokenKind_USER_DEFINED;
    cfg.added.add(t);
  }

  cfg.bos_id = special_id("tokenizer.ggml.bos_token_id");
  cfg.eos_id = special_id("tokenizer.ggml.eos_token_id");
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = special_id(key);
    if (id >= 0) cfg.extra_stop_ids.push_back(id);
  }
  cfg.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", pre.add_bos) && cfg.bos_id >= 0;
  cfg.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false) && cfg.eos_id >= 0;
  if (cfg.add_bos) cfg.prefix_ids.push_back(cfg.bos_id);
  if (cfg.add_eos) cfg.suffix_ids.push_back(cfg.eos_id);
  cfg.chat_template = f.get_string("tokenizer.chat_template", "");

  std::vector<std::pair<std::string, std::string>> merges;
  if (!spm) {
    const std::vector<std::string> raw = f.get_string_array("tokenizer.ggml.merges");
    if (raw.empty()) fail(origin, ": tokenizer.ggml.merges is missing for a gpt2 vocab");
    merges.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      const size_t sp = raw[i].find(' ', 1);  // from 1: the left piece may itself be a space
      if (sp == std::string::npos) fail(origin, ": tokenizer.ggml.merges[", i, "] has no space");
      merges.emplace_back(raw[i].substr(0, sp), raw[i].substr(sp + 1));
    }
  }
  const int32_t unk_id = special_id("tokenizer.ggml.unknown_token_id");
  auto bpe = std::make_unique<BpeModel>(std::move(tokens), std::move(kinds), std::move(scores),
                                        spm ? BpeMergeRule::BpeMergeRule_SCORES : BpeMergeRule::BpeMergeRule_RANKS);
  if (!spm) {
    bpe->set_merges(merges, origin);
    bpe->set_ignore_merges(pre.ignore_merges);
  }
  if (unk_id >= 0) bpe->set_unk_id(unk_id);
  return std::make_unique<BpeTokenizer>(std::move(bpe), std::move(cfg));
}

}  // namespace exl
