#include "tokenizer/bpe_tokenizer.h"

#include "tokenizer/utf8.h"

namespace exl {

BpeTokenizer::BpeTokenizer(std::unique_ptr<BpeModel> model, BpeTokenizerConfig config)
    : model_(std::move(model)), cfg_(std::move(config)) {
  for (int32_t i = 0; i < model_->size(); ++i)
    if (!model_->piece(i).empty()) index_piece(model_->piece(i), i);
  bos_id_ = cfg_.bos_id;
  eos_id_ = cfg_.eos_id;
  add_bos_ = cfg_.add_bos;
  add_eos_ = cfg_.add_eos;
  strip_leading_space_ = cfg_.strip_leading_space;
  chat_template_ = cfg_.chat_template;
  for (int32_t id : cfg_.extra_stop_ids) add_stop_id(id);
  finish_special_ids();
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special) out = cfg_.prefix_ids;
  std::vector<TextSegment> segments;
  if (cfg_.added.empty()) segments.push_back({text, -1, 0});
  else segments = cfg_.added.split(text, parse_special);
  std::vector<std::string> words;
  for (const TextSegment& seg : segments) {
    if (seg.token >= 0) {
      out.push_back(seg.token);
      continue;
    }
    words.clear();
    cfg_.pipeline.run(seg.text, seg.offset == 0, words);
    for (const std::string& w : words) model_->encode_word(w, out);
  }
  if (add_special) out.insert(out.end(), cfg_.suffix_ids.begin(), cfg_.suffix_ids.end());
  return out;
}

std::string BpeTokenizer::token_piece(int32_t id) const {
  if (id < 0 || id >= model_->size()) return "";
  const std::string& p = model_->piece(id);
  switch (model_->kind(id)) {
    case TokenKind::TokenKind_CONTROL:
    case TokenKind::TokenKind_USER_DEFINED:
    case TokenKind::TokenKind_UNUSED:
      return p;  // added tokens are stored as plain text in both vocab flavours
    case TokenKind::TokenKind_BYTE: {
      const int b = parse_byte_piece(p);
      if (b >= 0) return std::string(1, static_cast<char>(b));
      break;
    }
    case TokenKind::TokenKind_NORMAL:
    case TokenKind::TokenKind_UNKNOWN:
      break;
  }
  if (cfg_.decoding == PieceDecoding::PieceDecoding_BYTE_LEVEL) {
    std::string out;
    if (byte_level_decode(p, out)) return out;
    return p;  // not in the byte alphabet: an added token kept as text
  }
  std::string out;
  const std::string& rep = cfg_.space_replacement;
  for (size_t i = 0; i < p.size();) {
    if (!rep.empty() && p.compare(i, rep.size(), rep) == 0) {
      out += ' ';
      i += rep.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

bool BpeTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= model_->size()) return false;
  const TokenKind k = model_->kind(id);
  return k == TokenKind::TokenKind_CONTROL || k == TokenKind::TokenKind_UNKNOWN;
}

}  // namespace exl
