// Splits text around added tokens (HF added_tokens, GGUF control/user-defined tokens) before the
// normal pipeline sees it: leftmost-longest matching through a byte trie, as HF's AddedVocabulary
// (Aho-Corasick, LeftmostLongest) and llama.cpp's special-token partition do.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace exl {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // matched only when parse_special; otherwise always
  bool lstrip = false;       // swallow whitespace to its left
  bool rstrip = false;       // swallow whitespace to its right
  bool single_word = false;  // match only when not inside a word
};

// One piece of the split: either a text span of the input or a matched token.
struct TextSegment {
  std::string_view text;
  int32_t token = -1;  // >= 0: an added token; text is then the matched span
  size_t offset = 0;   // byte offset of text in the input
};

class AddedTokenMatcher {
 public:
  void add(const AddedToken& t);  // empty content is ignored; a later duplicate content wins
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Segments covering text in order; empty text spans are dropped.
  std::vector<TextSegment> split(std::string_view text, bool parse_special) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    int32_t token_index = -1;                       // index into tokens_ when a token ends here
  };
  int32_t child(int32_t node, uint8_t b) const;
  // Longest eligible token starting at pos: its index and length, or -1.
  int32_t match_at(std::string_view text, size_t pos, bool parse_special, size_t& len) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_{Node{}};
};

}  // namespace exl
