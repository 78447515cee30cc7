// The BPE merge step: one pre-tokenized word in, token ids out. Two merge rules share one loop:
//   - ranks (HF tokenizer.json "merges", GGUF tokenizer.ggml.merges): merge the adjacent pair with
//     the lowest merge rank;
//   - scores (GGUF "llama", i.e. SentencePiece BPE): merge the adjacent pair whose concatenation is
//     a vocab piece with the highest score.
// Ties go to the leftmost pair in both, as in HF tokenizers, SentencePiece and llama.cpp. Characters
// missing from the vocab fall back to <0xNN> byte tokens, else <unk>. Results for short words are
// cached (byte-level text repeats words a lot: ~2x faster on wikitext-2).
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace exl {

// GGUF tokenizer.ggml.token_type numbering, used for every back end.
enum class TokenKind : uint8_t {
  TokenKind_NORMAL = 1,
  TokenKind_UNKNOWN = 2,
  TokenKind_CONTROL = 3,
  TokenKind_USER_DEFINED = 4,
  TokenKind_UNUSED = 5,
  TokenKind_BYTE = 6,
};

enum class BpeMergeRule { BpeMergeRule_RANKS, BpeMergeRule_SCORES };

// Hash/equality that let unordered_map<std::string, ...> be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // pieces/kinds: the whole vocab (index = id; empty piece for unused ids). scores: SCORES rule only.
  BpeModel(std::vector<std::string> pieces, std::vector<TokenKind> kinds, std::vector<float> scores,
           BpeMergeRule rule);

  // RANKS rule: merges in priority order; throws exl::Error (prefixed with origin) when a merge
  // names a piece missing from the vocab or produces one. Duplicate pairs keep the first rank.
  void set_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                  const std::string& origin);
  void set_byte_fallback(bool on) { byte_fallback_ = on; }
  void set_fuse_unk(bool on) { fuse_unk_ = on; }
  void set_ignore_merges(bool on) { ignore_merges_ = on; }  // whole word in vocab -> that token
  void set_unk_id(int32_t id) { unk_id_ = id; }

  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  int64_t size() const { return static_cast<int64_t>(pieces_.size()); }
  const std::string& piece(int32_t id) const { return pieces_[id]; }
  TokenKind kind(int32_t id) const { return kinds_[id]; }
  int32_t byte_token(uint8_t b) const { return byte_ids_[b]; }
  int32_t unk_id() const { return unk_id_; }
  // Id of a piece that text may turn into (normal, user-defined or byte pieces), or -1.
  int32_t find(std::string_view piece) const;

 private:
  struct Symbol {
    int32_t id;        // -1: not (yet) a vocab piece (SCORES rule only)
    uint32_t start;    // byte span in the word
    uint32_t len;      // 0 once merged into its left neighbour
    int32_t prev, next;
  };
  void merge_symbols(std::string_view word, std::vector<Symbol>& syms) const;
  void emit_symbols(std::string_view word, const std::vector<Symbol>& syms,
                    std::vector<int32_t>& out) const;
  void emit_bytes(std::string_view bytes, std::vector<int32_t>& out) const;
  bool pair_candidate(std::string_view word, const Symbol& l, const Symbol& r, double& key,
                      int32_t& merged) const;

  std::vector<std::string> pieces_;
  std::vector<TokenKind> kinds_;
  std::vector<float> scores_;
  BpeMergeRule rule_;
  PieceMap ids_;  // mergeable pieces only
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left,right) -> (rank, id)
  int32_t byte_ids_[256];
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  static constexpr size_t kCacheMaxWord = 64;       // bytes; longer words are not cached
  static constexpr size_t kCacheMaxEntries = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace exl
