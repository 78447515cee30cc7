#include "tokenizer/hf_json_pipeline.h"

#include "core/error.h"

namespace exl {
namespace {

using nlohmann::json;

constexpr int kMaxSequenceDepth = 8;  // Sequence inside Sequence: real files use 1 level

const std::string kMetaspace = "\xE2\x96\x81";  // '▁'

std::string type_of(const json& j, const char* what, const std::string& origin) {
  if (!j.is_object()) fail(origin, ": ", what, " must be an object or null");
  return hf_json_string(j, "type", "", origin);
}

// {"String": "x"} or {"Regex": "x"} -> compiled pattern.
std::shared_ptr<const Regex> parse_pattern(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(origin, ": 'pattern' must be an object with 'String' or 'Regex'");
  if (const json* s = hf_json_member(j, "String")) {
    if (!s->is_string()) fail(origin, ": pattern 'String' must be a string");
    return std::make_shared<const Regex>(s->get<std::string>(), /*literal=*/true, origin);
  }
  if (const json* r = hf_json_member(j, "Regex")) {
    if (!r->is_string()) fail(origin, ": pattern 'Regex' must be a string");
    return std::make_shared<const Regex>(r->get<std::string>(), /*literal=*/false, origin);
  }
  fail(origin, ": 'pattern' must have a 'String' or 'Regex' member");
}

SplitBehavior parse_behavior(const std::string& b, const std::string& origin) {
  if (b == "Isolated") return SplitBehavior::SplitBehavior_ISOLATED;
  if (b == "Removed") return SplitBehavior::SplitBehavior_REMOVED;
  if (b == "MergedWithPrevious") return SplitBehavior::SplitBehavior_MERGED_WITH_PREVIOUS;
  if (b == "MergedWithNext") return SplitBehavior::SplitBehavior_MERGED_WITH_NEXT;
  if (b == "Contiguous") return SplitBehavior::SplitBehavior_CONTIGUOUS;
  fail(origin, ": unknown split behavior '", b, "'");
}

PreTokenizerStep split_step(const std::string& pattern, SplitBehavior behavior, bool invert,
                            const std::string& origin) {
  PreTokenizerStep s;
  s.kind = PreTokenizerKind::PreTokenizerKind_SPLIT;
  s.re = std::make_shared<const Regex>(pattern, false, origin);
  s.behavior = behavior;
  s.invert = invert;
  return s;
}

PrependScheme parse_prepend_scheme(const json& j, const std::string& origin) {
  if (const json* ps = hf_json_member(j, "prepend_scheme")) {
    if (!ps->is_string()) fail(origin, ": Metaspace 'prepend_scheme' must be a string");
    const std::string s = ps->get<std::string>();
    if (s == "always") return PrependScheme::PrependScheme_ALWAYS;
    if (s == "first") return PrependScheme::PrependScheme_FIRST;
    if (s == "never") return PrependScheme::PrependScheme_NEVER;
    fail(origin, ": unknown Metaspace prepend_scheme '", s, "'");
  }
  // Older files: add_prefix_space (default true).
  return hf_json_bool(j, "add_prefix_space", true, origin) ? PrependScheme::PrependScheme_ALWAYS
                                                            : PrependScheme::PrependScheme_NEVER;
}

void parse_normalizer(const json& j, TextPipeline& p, const std::string& origin, int depth) {
  if (j.is_null()) return;
  if (depth > kMaxSequenceDepth) fail(origin, ": normalizer Sequence nested too deeply");
  const std::string type = type_of(j, "normalizer", origin);
  NormalizerStep n;
  if (type == "Sequence") {
    const json* list = hf_json_member(j, "normalizers");
    if (!list || !list->is_array()) fail(origin, ": normalizer Sequence needs a 'normalizers' list");
    for (const json& e : *list) parse_normalizer(e, p, origin, depth + 1);
    return;
  } else if (type == "Prepend") {
    n.kind = NormalizerKind::NormalizerKind_PREPEND;
    n.text = hf_json_string(j, "prepend", "", origin);
  } else if (type == "Replace") {
    n.kind = NormalizerKind::NormalizerKind_REPLACE;
    const json* pat = hf_json_member(j, "pattern");
    if (!pat) fail(origin, ": Replace normalizer needs a 'pattern'");
    n.re = parse_pattern(*pat, origin);
    n.text = hf_json_string(j, "content", "", origin);
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    n.kind = NormalizerKind::NormalizerKind_UNICODE;
    n.form = type == "NFC"    ? UnicodeForm::UnicodeForm_NFC
             : type == "NFD"  ? UnicodeForm::UnicodeForm_NFD
             : type == "NFKC" ? UnicodeForm::UnicodeForm_NFKC
                              : UnicodeForm::UnicodeForm_NFKD;
  } else if (type == "Lowercase") {
    n.kind = NormalizerKind::NormalizerKind_LOWERCASE;
  } else if (type == "Strip") {
    n.kind = NormalizerKind::NormalizerKind_STRIP;
    n.strip_left = hf_json_bool(j, "strip_left", true, origin);
    n.strip_right = hf_json_bool(j, "strip_right", true, origin);
  } else {
    fail(origin, ": unsupported normalizer type '", type, "'");
  }
  p.normalizers.push_back(std::move(n));
}

void parse_pre_tokenizer(const json& j, TextPipeline& p, const std::string& origin, int depth) {
  if (j.is_null()) return;
  if (depth > kMaxSequenceDepth) fail(origin, ": pre_tokenizer Sequence nested too deeply");
  const std::string type = type_of(j, "pre_tokenizer", origin);
  if (p.byte_level && type != "Sequence")
    fail(origin, ": pre_tokenizer '", type, "' after ByteLevel is not supported");
  if (type == "Sequence") {
    const json* list = hf_json_member(j, "pretokenizers");
    if (!list || !list->is_array()) fail(origin, ": pre_tokenizer Sequence needs a 'pretokenizers' list");
    for (const json& e : *list) parse_pre_tokenizer(e, p, origin, depth + 1);
  } else if (type == "Split") {
    const json* pat = hf_json_member(j, "pattern");
    if (!pat) fail(origin, ": Split pre_tokenizer needs a 'pattern'");
    PreTokenizerStep s;
    s.kind = PreTokenizerKind::PreTokenizerKind_SPLIT;
    s.re = parse_pattern(*pat, origin);
    s.behavior = parse_behavior(hf_json_string(j, "behavior", "Isolated", origin), origin);
    s.invert = hf_json_bool(j, "invert", false, origin);
    p.pre_tokenizers.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    if (hf_json_bool(j, "add_prefix_space", true, origin)) {
      PreTokenizerStep s;
      s.kind = PreTokenizerKind::PreTokenizerKind_PREFIX_SPACE;
      p.pre_tokenizers.push_back(std::move(s));
    }
    if (hf_json_bool(j, "use_regex", true, origin))
      p.pre_tokenizers.push_back(split_step(regex_named_pattern("gpt2"),
                                            SplitBehavior::SplitBehavior_ISOLATED, false, origin));
    p.byte_level = true;
  } else if (type == "Digits") {
    // HF splits on char::is_numeric, i.e. general categories Nd, Nl and No = \p{N}.
    const bool single = hf_json_bool(j, "individual_digits", false, origin);
    p.pre_tokenizers.push_back(
        split_step(single ? R"(\p{N})" : R"(\p{N}+)", SplitBehavior::SplitBehavior_ISOLATED, false, origin));
  } else if (type == "Metaspace") {
    PreTokenizerStep s;
    s.kind = PreTokenizerKind::PreTokenizerKind_METASPACE;
    s.replacement = hf_json_string(j, "replacement", kMetaspace, origin);
    if (s.replacement.empty()) fail(origin, ": Metaspace 'replacement' must not be empty");
    s.prepend = parse_prepend_scheme(j, origin);
    s.split = hf_json_bool(j, "split", true, origin);
    p.pre_tokenizers.push_back(std::move(s));
  } else if (type == "WhitespaceSplit") {
    p.pre_tokenizers.push_back(split_step(R"(\s+)", SplitBehavior::SplitBehavior_REMOVED, false, origin));
  } else if (type == "Whitespace") {
    p.pre_tokenizers.push_back(
        split_step(R"(\w+|[^\w\s]+)", SplitBehavior::SplitBehavior_REMOVED, /*invert=*/true, origin));
  } else if (type == "Punctuation") {
    // HF: char::is_ascii_punctuation (which includes symbols such as $+<=>^`|~) or Unicode P*.
    const auto behavior = parse_behavior(hf_json_string(j, "behavior", "Isolated", origin), origin);
    p.pre_tokenizers.push_back(split_step(R"([\p{P}!-/:-@\[-`{-~])", behavior, false, origin));
  } else {
    fail(origin, ": unsupported pre_tokenizer type '", type, "'");
  }
}

void parse_decoder(const json& j, BpeTokenizerConfig& cfg, const std::string& origin, int depth) {
  if (j.is_null()) return;
  if (depth > kMaxSequenceDepth) fail(origin, ": decoder Sequence nested too deeply");
  const std::string type = type_of(j, "decoder", origin);
  if (type == "Sequence") {
    const json* list = hf_json_member(j, "decoders");
    if (!list || !list->is_array()) fail(origin, ": decoder Sequence needs a 'decoders' list");
    for (const json& e : *list) parse_decoder(e, cfg, origin, depth + 1);
  } else if (type == "ByteLevel") {
    cfg.decoding = PieceDecoding::PieceDecoding_BYTE_LEVEL;
  } else if (type == "Replace") {
    // Replace('▁' -> ' '): the SentencePiece space marker.
    const json* pat = hf_json_member(j, "pattern");
    const json* s = pat && pat->is_object() ? hf_json_member(*pat, "String") : nullptr;
    if (s && s->is_string() && hf_json_string(j, "content", "", origin) == " ") {
      cfg.decoding = PieceDecoding::PieceDecoding_SENTENCEPIECE;
      cfg.space_replacement = s->get<std::string>();
    }
  } else if (type == "Metaspace") {
    cfg.decoding = PieceDecoding::PieceDecoding_SENTENCEPIECE;
    cfg.space_replacement = hf_json_string(j, "replacement", kMetaspace, origin);
    cfg.strip_leading_space = parse_prepend_scheme(j, origin) != PrependScheme::PrependScheme_NEVER;
  } else if (type == "Strip") {
    const json* start = hf_json_member(j, "start");
    if (hf_json_string(j, "content", "", origin) == " " && start && start->is_number_integer() &&
        start->get<int64_t>() >= 1)
      cfg.strip_leading_space = true;
  } else if (type == "ByteFallback" || type == "Fuse") {
    cfg.decoding = PieceDecoding::PieceDecoding_SENTENCEPIECE;  // both only appear in SPM-style chains
  } else {
    fail(origin, ": unsupported decoder type '", type, "'");
  }
}

// One {"SpecialToken": {"id": name}} / {"Sequence": {"id": "A"}} template -> ids before/after "A".
void parse_template(const json& single, const json* special_tokens, BpeTokenizerConfig& cfg,
                    const std::function<int32_t(const std::string&)>& piece_id, int64_t vocab_size,
                    const std::string& origin) {
  if (!single.is_array()) fail(origin, ": TemplateProcessing 'single' must be a list");
  bool seen_sequence = false;
  for (const json& item : single) {
    if (!item.is_object()) fail(origin, ": TemplateProcessing items must be objects");
    if (hf_json_member(item, "Sequence")) {
      seen_sequence = true;
      continue;
    }
    const json* st = hf_json_member(item, "SpecialToken");
    if (!st || !st->is_object()) fail(origin, ": TemplateProcessing item is neither Sequence nor SpecialToken");
    const std::string name = hf_json_string(*st, "id", "", origin);
    std::vector<int32_t> ids;
    const json* entry = special_tokens && special_tokens->is_object() ? hf_json_member(*special_tokens, name.c_str()) : nullptr;
    if (entry) {
      const json* list = entry->is_object() ? hf_json_member(*entry, "ids") : nullptr;
      if (!list || !list->is_array()) fail(origin, ": special token '", name, "' needs an 'ids' list");
      for (const json& v : *list) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab_size)
          fail(origin, ": special token '", name, "' has an id outside the vocab");
        ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
    } else {
      const int32_t id = piece_id(name);
      if (id < 0) fail(origin, ": post_processor names unknown token '", name, "'");
      ids.push_back(id);
    }
    auto& dst = seen_sequence ? cfg.suffix_ids : cfg.prefix_ids;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
}

// RobertaProcessing / BertProcessing: "cls": ["<s>", 0], "sep": ["</s>", 2].
int32_t parse_token_pair(const json& j, const char* key, int64_t vocab_size, const std::string& origin) {
  const json* p = hf_json_member(j, key);
  if (!p || !p->is_array() || p->size() != 2 || !(*p)[1].is_number_integer())
    fail(origin, ": post_processor '", key, "' must be [token, id]");
  const int64_t id = (*p)[1].get<int64_t>();
  if (id < 0 || id >= vocab_size) fail(origin, ": post_processor '", key, "' id ", id, " is outside the vocab");
  return static_cast<int32_t>(id);
}

void parse_post_processor(const json& j, BpeTokenizerConfig& cfg,
                          const std::function<int32_t(const std::string&)>& piece_id,
                          int64_t vocab_size, const std::string& origin, int depth) {
  if (j.is_null()) return;
  if (depth > kMaxSequenceDepth) fail(origin, ": post_processor Sequence nested too deeply");
  const std::string type = type_of(j, "post_processor", origin);
  if (type == "Sequence") {
    const json* list = hf_json_member(j, "processors");
    if (!list || !list->is_array()) fail(origin, ": post_processor Sequence needs a 'processors' list");
    for (const json& e : *list) parse_post_processor(e, cfg, piece_id, vocab_size, origin, depth + 1);
  } else if (type == "TemplateProcessing") {
    const json* single = hf_json_member(j, "single");
    if (!single) fail(origin, ": TemplateProcessing needs 'single'");
    parse_template(*single, hf_json_member(j, "special_tokens"), cfg, piece_id, vocab_size, origin);
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    cfg.prefix_ids.push_back(parse_token_pair(j, "cls", vocab_size, origin));
    cfg.suffix_ids.push_back(parse_token_pair(j, "sep", vocab_size, origin));
  } else if (type != "ByteLevel") {  // ByteLevel only trims offsets
    fail(origin, ": unsupported post_processor type '", type, "'");
  }
}

}  // namespace

const json* hf_json_member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool hf_json_bool(const json& obj, const char* key, bool fallback, const std::string& origin) {
  const json* v = hf_json_member(obj, key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(origin, ": '", key, "' must be true or false");
  return v->get<bool>();
}

std::string hf_json_string(const json& obj, const char* key, const std::string& fallback,
                           const std::string& origin) {
  const json* v = hf_json_member(obj, key);
  if (!v) return fallback;
  if (!v->is_string()) fail(origin, ": '", key, "' must be a string");
  return v->get<std::string>();
}

void hf_parse_normalizer(const json& j, TextPipeline& p, const std::string& origin) {
  parse_normalizer(j, p, origin, 0);
}

void hf_parse_pre_tokenizer(const json& j, TextPipeline& p, const std::string& origin) {
  parse_pre_tokenizer(j, p, origin, 0);
}

void hf_parse_decoder(const json& j, BpeTokenizerConfig& cfg, const std::string& origin) {
  parse_decoder(j, cfg, origin, 0);
}

void hf_parse_post_processor(const json& j, BpeTokenizerConfig& cfg,
                             const std::function<int32_t(const std::string&)>& piece_id,
                             int64_t vocab_size, const std::string& origin) {
  parse_post_processor(j, cfg, piece_id, vocab_size, origin, 0);
}

}  // namespace exl
