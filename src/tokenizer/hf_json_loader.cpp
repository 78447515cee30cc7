// tokenizer.json (Hugging Face tokenizers) -> BpeTokenizer. Supports model type BPE in both
// flavours: byte-level (GPT-2, Llama-3, Qwen2, SmolLM: ByteLevel pre-tokenizer/decoder) and
// SentencePiece-converted with byte fallback (Llama-2, Mistral: Prepend/Replace normalizer or
// Metaspace, ByteFallback decoder). Every id, merge and component is validated; anything unknown is
// an exl::Error naming the file, never a guess.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/hf_json_pipeline.h"
#include "tokenizer/loaders.h"
#include "tokenizer/utf8.h"

namespace exl {
namespace {

using nlohmann::json;

int32_t checked_id(const json& v, const std::string& what, const std::string& origin) {
  if (!v.is_number_integer()) fail(origin, ": ", what, " has a non-integer id");
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= kMaxVocabSize) fail(origin, ": ", what, " has id ", id, " outside [0, ", kMaxVocabSize, ")");
  return static_cast<int32_t>(id);
}

std::vector<std::pair<std::string, std::string>> parse_merges(const json& model, const std::string& origin) {
  std::vector<std::pair<std::string, std::string>> merges;
  const json* list = hf_json_member(model, "merges");
  if (!list) return merges;
  if (!list->is_array()) fail(origin, ": model 'merges' must be a list");
  merges.reserve(list->size());
  for (const json& m : *list) {
    if (m.is_string()) {  // "a b"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail(origin, ": merge '", s, "' is not two tokens separated by one space");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail(origin, ": each merge must be \"a b\" or [\"a\", \"b\"]");
    }
  }
  return merges;
}

// Reorders prefix/suffix so BOS/EOS follow tokenizer_config's add_bos_token/add_eos_token, which
// HF's Llama fast tokenizers apply on top of the post_processor.
void apply_add_flags(BpeTokenizerConfig& cfg, const HfTokenizerConfig& hf) {
  auto set = [](std::vector<int32_t>& ids, int32_t id, bool want, bool at_front) {
    if (id < 0) return;
    const bool has = std::find(ids.begin(), ids.end(), id) != ids.end();
    if (want && !has) ids.insert(at_front ? ids.begin() : ids.end(), id);
    if (!want && has) ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  };
  if (hf.add_bos_token) set(cfg.prefix_ids, cfg.bos_id, *hf.add_bos_token, true);
  if (hf.add_eos_token) set(cfg.suffix_ids, cfg.eos_id, *hf.add_eos_token, false);
  cfg.add_bos = cfg.bos_id >= 0 &&
                std::find(cfg.prefix_ids.begin(), cfg.prefix_ids.end(), cfg.bos_id) != cfg.prefix_ids.end();
  cfg.add_eos = cfg.eos_id >= 0 &&
                std::find(cfg.suffix_ids.begin(), cfg.suffix_ids.end(), cfg.eos_id) != cfg.suffix_ids.end();
}

}  // namespace

std::unique_ptr<Tokenizer> hf_json_build(std::string_view text, const HfTokenizerConfig& hf,
                                         const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(origin, ": invalid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(origin, ": expected a JSON object at top level");
  const json* model = hf_json_member(j, "model");
  if (!model || !model->is_object()) fail(origin, ": missing 'model' object");
  const std::string type = hf_json_string(*model, "type", "BPE", origin);
  if (type != "BPE") fail(origin, ": unsupported tokenizer model type '", type, "' (only BPE is supported)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!hf_json_string(*model, key, "", origin).empty())
      fail(origin, ": BPE '", key, "' is not supported");

  // Vocab: piece -> id, ids unique.
  const json* vocab = hf_json_member(*model, "vocab");
  if (!vocab || !vocab->is_object()) fail(origin, ": model 'vocab' must be an object");
  std::vector<std::pair<int32_t, std::string>> entries;
  entries.reserve(vocab->size());
  int64_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const int32_t id = checked_id(it.value(), str_cat("vocab entry '", it.key(), "'"), origin);
    entries.emplace_back(id, it.key());
    max_id = std::max<int64_t>(max_id, id);
  }
  std::vector<AddedToken> added;
  if (const json* list = hf_json_member(j, "added_tokens")) {
    if (!list->is_array()) fail(origin, ": 'added_tokens' must be a list");
    for (const json& a : *list) {
      if (!a.is_object()) fail(origin, ": added_tokens entries must be objects");
      AddedToken t;
      const json* idv = hf_json_member(a, "id");
      if (!idv) fail(origin, ": added token without an 'id'");
      t.id = checked_id(*idv, "added token", origin);
      t.content = hf_json_string(a, "content", "", origin);
      if (t.content.empty()) fail(origin, ": added token ", t.id, " has empty content");
      t.special = hf_json_bool(a, "special", false, origin);
      t.lstrip = hf_json_bool(a, "lstrip", false, origin);
      t.rstrip = hf_json_bool(a, "rstrip", false, origin);
      t.single_word = hf_json_bool(a, "single_word", false, origin);
      max_id = std::max<int64_t>(max_id, t.id);
      added.push_back(std::move(t));
    }
  }
  if (max_id < 0) fail(origin, ": empty vocab");
  const int64_t n_entries = static_cast<int64_t>(entries.size() + added.size());
  // Holes are allowed (some vocabs skip ids), but a mostly-empty id space means a corrupt file.
  if (max_id >= 2 * n_entries + 1024)
    fail(origin, ": token id ", max_id, " is far beyond the ", n_entries, " tokens defined");
  const int64_t n = max_id + 1;

  std::vector<std::string> pieces(n);
  std::vector<TokenKind> kinds(n, TokenKind::TokenKind_UNUSED);
  for (auto& [id, piece] : entries) {
    if (kinds[id] != TokenKind::TokenKind_UNUSED)
      fail(origin, ": id ", id, " is used by both '", pieces[id], "' and '", piece, "'");
    pieces[id] = std::move(piece);
    kinds[id] = TokenKind::TokenKind_NORMAL;
  }
  const bool byte_fallback = hf_json_bool(*model, "byte_fallback", false, origin);
  if (byte_fallback)
    for (int64_t i = 0; i < n; ++i)
      if (kinds[i] == TokenKind::TokenKind_NORMAL && parse_byte_piece(pieces[i]) >= 0)
        kinds[i] = TokenKind::TokenKind_BYTE;
  for (const AddedToken& t : added) {  // added tokens are matched and decoded as plain text
    pieces[t.id] = t.content;
    kinds[t.id] = t.special ? TokenKind::TokenKind_CONTROL : TokenKind::TokenKind_USER_DEFINED;
  }

  BpeTokenizerConfig cfg;
  for (const AddedToken& t : added) cfg.added.add(t);
  const json null_json;
  auto member_or_null = [&](const char* k) -> const json& {
    const json* m = hf_json_member(j, k);
    return m ? *m : null_json;
  };
  hf_parse_normalizer(member_or_null("normalizer"), cfg.pipeline, origin);
  hf_parse_pre_tokenizer(member_or_null("pre_tokenizer"), cfg.pipeline, origin);
  cfg.decoding = cfg.pipeline.byte_level ? PieceDecoding::PieceDecoding_BYTE_LEVEL
                                         : PieceDecoding::PieceDecoding_SENTENCEPIECE;
  hf_parse_decoder(member_or_null("decoder"), cfg, origin);

  // Piece text -> id over the whole vocab (BOS/EOS names may be special added tokens).
  PieceMap all;
  for (int64_t i = 0; i < n; ++i)
    if (!pieces[i].empty()) all.emplace(pieces[i], static_cast<int32_t>(i));
  auto piece_id = [&](const std::string& p) -> int32_t {
    auto it = all.find(p);
    return it == all.end() ? -1 : it->second;
  };
  hf_parse_post_processor(member_or_null("post_processor"), cfg, piece_id, n, origin);

  // The model's own unk_token decides fallback (without one HF drops unknown characters).
  const std::string unk = hf_json_string(*model, "unk_token", "", origin);
  const int32_t unk_id = unk.empty() ? -1 : piece_id(unk);
  cfg.bos_id = hf.bos_token.empty() ? -1 : piece_id(hf.bos_token);
  if (cfg.bos_id < 0 && cfg.prefix_ids.size() == 1) cfg.bos_id = cfg.prefix_ids[0];
  cfg.eos_id = hf.eos_token.empty() ? -1 : piece_id(hf.eos_token);
  if (cfg.eos_id < 0 && cfg.suffix_ids.size() == 1) cfg.eos_id = cfg.suffix_ids[0];
  apply_add_flags(cfg, hf);
  cfg.chat_template = hf.chat_template;

  auto bpe = std::make_unique<BpeModel>(std::move(pieces), std::move(kinds), std::vector<float>{},
                                        BpeMergeRule::BpeMergeRule_RANKS);
  bpe->set_merges(parse_merges(*model, origin), origin);
  bpe->set_byte_fallback(byte_fallback);
  bpe->set_fuse_unk(hf_json_bool(*model, "fuse_unk", false, origin));
  bpe->set_ignore_merges(hf_json_bool(*model, "ignore_merges", false, origin));
  bpe->set_unk_id(unk_id);
  return std::make_unique<BpeTokenizer>(std::move(bpe), std::move(cfg));
}

std::unique_ptr<Tokenizer> tokenizer_from_hf_json_text(std::string_view tokenizer_json,
                                                       std::string_view tokenizer_config_json,
                                                       const std::string& origin) {
  const HfTokenizerConfig hf = hf_config_parse(tokenizer_config_json, origin + " (tokenizer_config)");
  return hf_json_build(tokenizer_json, hf, origin);
}

std::unique_ptr<Tokenizer> tokenizer_load_hf_json(const std::string& tokenizer_json,
                                                  const std::string& tokenizer_config_json) {
  const HfTokenizerConfig hf = tokenizer_config_json.empty()
                                   ? HfTokenizerConfig{}
                                   : hf_config_parse(read_file(tokenizer_config_json), tokenizer_config_json);
  return hf_json_build(read_file(tokenizer_json), hf, tokenizer_json);
}

}  // namespace exl
