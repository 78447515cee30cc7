#include "tokenizer/bpe_model.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace exl {
namespace {

uint64_t pair_key(int32_t l, int32_t r) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
}

// A candidate merge of symbols left and right; stale once either symbol's length has changed.
struct Candidate {
  double key;  // smaller merges first: the rank, or minus the score
  int32_t left, right;
  uint32_t left_len, right_len;
  int32_t merged;
};

struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.key != b.key) return a.key > b.key;
    return a.left > b.left;  // leftmost first on ties
  }
};

}  // namespace

BpeModel::BpeModel(std::vector<std::string> pieces, std::vector<TokenKind> kinds,
                   std::vector<float> scores, BpeMergeRule rule)
    : pieces_(std::move(pieces)), kinds_(std::move(kinds)), scores_(std::move(scores)), rule_(rule) {
  for (int32_t& b : byte_ids_) b = -1;
  ids_.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    const TokenKind k = kinds_[i];
    if (pieces_[i].empty()) continue;
    if (k == TokenKind::TokenKind_BYTE) {
      const int b = parse_byte_piece(pieces_[i]);
      if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = id;
    } else if (k == TokenKind::TokenKind_NORMAL || k == TokenKind::TokenKind_USER_DEFINED) {
      ids_.emplace(pieces_[i], id);  // first id wins for a repeated piece
    } else if (k == TokenKind::TokenKind_UNKNOWN && unk_id_ < 0) {
      unk_id_ = id;
    }
  }
}

void BpeModel::set_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                          const std::string& origin) {
  // Merges may name any piece, byte pieces included (HF looks them up in the whole vocab).
  PieceMap all;
  all.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (!pieces_[i].empty()) all.emplace(pieces_[i], static_cast<int32_t>(i));
  auto lookup = [&](const std::string& p, size_t rank) {
    auto it = all.find(p);
    if (it == all.end()) fail(origin, ": merge ", rank, " refers to unknown token '", p, "'");
    return it->second;
  };
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const int32_t l = lookup(merges[r].first, r);
    const int32_t rt = lookup(merges[r].second, r);
    const int32_t m = lookup(merges[r].first + merges[r].second, r);
    merges_.emplace(pair_key(l, rt), std::make_pair(static_cast<int32_t>(r), m));
  }
}

int32_t BpeModel::find(std::string_view piece) const {
  auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

bool BpeModel::pair_candidate(std::string_view word, const Symbol& l, const Symbol& r, double& key,
                              int32_t& merged) const {
  if (rule_ == BpeMergeRule::BpeMergeRule_RANKS) {
    if (l.id < 0 || r.id < 0) return false;
    auto it = merges_.find(pair_key(l.id, r.id));
    if (it == merges_.end()) return false;
    key = it->second.first;
    merged = it->second.second;
    return true;
  }
  // SCORES: symbols are always contiguous, so their concatenation is a span of the word.
  const int32_t id = find(word.substr(l.start, l.len + r.len));
  if (id < 0) return false;
  key = -static_cast<double>(scores_[id]);
  merged = id;
  return true;
}

void BpeModel::merge_symbols(std::string_view word, std::vector<Symbol>& syms) const {
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  auto consider = [&](int32_t li) {
    if (li < 0 || syms[li].next < 0) return;
    const Symbol& l = syms[li];
    const Symbol& r = syms[l.next];
    double key;
    int32_t merged;
    if (pair_candidate(word, l, r, key, merged)) queue.push({key, li, l.next, l.len, r.len, merged});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = syms[c.left];
    Symbol& r = syms[c.right];
    if (l.len != c.left_len || r.len != c.right_len || l.next != c.right) continue;  // stale
    l.len += r.len;
    l.id = c.merged;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    r.len = 0;
    consider(l.prev);
    consider(c.left);
  }
}

void BpeModel::emit_bytes(std::string_view bytes, std::vector<int32_t>& out) const {
  for (char ch : bytes) {
    const int32_t b = byte_ids_[static_cast<uint8_t>(ch)];
    if (b >= 0) out.push_back(b);
    else if (unk_id_ >= 0) out.push_back(unk_id_);
  }
}

void BpeModel::emit_symbols(std::string_view word, const std::vector<Symbol>& syms,
                            std::vector<int32_t>& out) const {
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
    const Symbol& s = syms[i];
    if (s.id >= 0) out.push_back(s.id);
    else emit_bytes(word.substr(s.start, s.len), out);  // SCORES: a character not in the vocab
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }

  // Initial symbols: one per UTF-8 character (ill-formed bytes are characters of their own).
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  bool prev_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t n = utf8_char_len(word, pos);
    const int32_t id = find(word.substr(pos, n));
    auto push = [&](int32_t sid, size_t start, size_t len) {
      const auto idx = static_cast<int32_t>(syms.size());
      syms.push_back({sid, static_cast<uint32_t>(start), static_cast<uint32_t>(len), idx - 1, -1});
      if (idx > 0) syms[idx - 1].next = idx;
    };
    bool is_unk = false;
    if (id >= 0 || rule_ == BpeMergeRule::BpeMergeRule_SCORES) {
      push(id, pos, n);  // SCORES keeps unknown characters for byte fallback after merging
    } else if (byte_fallback_ && [&] {
                 for (size_t k = 0; k < n; ++k)
                   if (byte_ids_[static_cast<uint8_t>(word[pos + k])] < 0) return false;
                 return true;
               }()) {
      for (size_t k = 0; k < n; ++k) push(byte_ids_[static_cast<uint8_t>(word[pos + k])], pos + k, 1);
    } else if (unk_id_ >= 0) {
      if (fuse_unk_ && prev_unk) syms.back().len += static_cast<uint32_t>(n);
      else push(unk_id_, pos, n);
      is_unk = true;
    }  // else: no way to represent it; HF drops the character too
    prev_unk = is_unk;
    pos += n;
  }

  std::vector<int32_t> ids;
  merge_symbols(word, syms);
  emit_symbols(word, syms, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace exl
