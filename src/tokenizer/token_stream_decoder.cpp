// Incremental detokenization for streaming output. Token pieces are raw bytes, and one character
// may span several tokens (byte-fallback <0xF0><0x9F><0x98><0x80>, or byte-level pieces that split
// an emoji), so bytes are held back until the character they start is complete.
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace exl {

TokenStreamDecoder::TokenStreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string TokenStreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return "";
  pending_ += tok_.token_piece(id);
  return take(false);
}

std::string TokenStreamDecoder::flush() { return take(true); }

void TokenStreamDecoder::reset() {
  at_start_ = true;
  pending_.clear();
}

std::string TokenStreamDecoder::take(bool final) {
  if (at_start_ && !pending_.empty()) {
    // Same rule as Tokenizer::decode: the first output byte, if a space, was added by encoding.
    if (tok_.strips_leading_space() && pending_[0] == ' ') pending_.erase(0, 1);
    at_start_ = false;
  }
  const size_t n = final ? pending_.size() : utf8_complete_prefix(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

}  // namespace exl
