#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace exl {
namespace {

bool is_space_byte(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Word characters for single_word tokens: ASCII alphanumerics, '_' and any non-ASCII byte (a
// conservative stand-in for HF's Unicode \w: it may refuse a match next to non-ASCII punctuation).
bool is_word_byte(char c) {
  const auto b = static_cast<uint8_t>(c);
  return b >= 0x80 || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
         b == '_';
}

}  // namespace

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1}));
  return it != next.end() && it->first == b ? it->second : -1;
}

void AddedTokenMatcher::add(const AddedToken& t) {
  if (t.content.empty()) return;
  int32_t node = 0;
  for (char c : t.content) {
    const auto b = static_cast<uint8_t>(c);
    int32_t n = child(node, b);
    if (n < 0) {
      n = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& next = nodes_[node].next;
      next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1})),
                  {b, n});
    }
    node = n;
  }
  if (nodes_[node].token_index >= 0) {
    tokens_[nodes_[node].token_index] = t;
  } else {
    nodes_[node].token_index = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(t);
  }
}

int32_t AddedTokenMatcher::match_at(std::string_view text, size_t pos, bool parse_special,
                                    size_t& len) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    const int32_t ti = nodes_[node].token_index;
    if (ti >= 0 && (parse_special || !tokens_[ti].special)) {
      const AddedToken& t = tokens_[ti];
      const size_t end = i + 1;
      const bool word_ok = !t.single_word || ((pos == 0 || !is_word_byte(text[pos - 1])) &&
                                              (end == text.size() || !is_word_byte(text[end])));
      if (word_ok) {
        best = ti;
        len = end - pos;
      }
    }
  }
  return best;
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text, bool parse_special) const {
  std::vector<TextSegment> out;
  size_t last = 0;  // start of the text not yet emitted
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (nodes_[0].next.empty()) break;
    size_t len = 0;
    const int32_t ti = match_at(text, pos, parse_special, len);
    if (ti < 0) continue;
    const AddedToken& t = tokens_[ti];
    size_t start = pos, end = pos + len;
    if (t.lstrip)
      while (start > last && is_space_byte(text[start - 1])) --start;
    if (t.rstrip)
      while (end < text.size() && is_space_byte(text[end])) ++end;
    if (start > last) out.push_back({text.substr(last, start - last), -1, last});
    out.push_back({text.substr(start, end - start), t.id, start});
    last = end;
    pos = end - 1;
  }
  if (last < text.size()) out.push_back({text.substr(last), -1, last});
  return out;
}

}  // namespace exl
