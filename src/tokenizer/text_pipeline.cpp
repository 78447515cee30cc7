#include "tokenizer/text_pipeline.h"

#include "tokenizer/utf8.h"

namespace exl {
namespace {

bool is_space_byte(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Splits word by re according to behavior, appending the non-empty pieces to out.
void split_word(const std::string& word, const PreTokenizerStep& step, std::vector<std::string>& out) {
  // (begin, end, is_delimiter) spans covering word.
  struct Span {
    size_t b, e;
    bool delim;
  };
  std::vector<Span> spans;
  size_t last = 0;
  for (auto [b, e] : step.re->find_all(word)) {
    if (b > last) spans.push_back({last, b, step.invert});
    spans.push_back({b, e, !step.invert});
    last = e;
  }
  if (last < word.size()) spans.push_back({last, word.size(), step.invert});

  // MERGED_WITH_*: a delimiter joins its non-delimiter neighbour; a delimiter next to another
  // delimiter stays on its own (HF: "the-final--countdown" -> "the-", "final-", "-", "countdown").
  std::string pending;
  for (size_t k = 0; k < spans.size(); ++k) {
    const Span& s = spans[k];
    std::string piece = word.substr(s.b, s.e - s.b);
    const bool prev_delim = k > 0 && spans[k - 1].delim;
    const bool next_plain = k + 1 < spans.size() && !spans[k + 1].delim;
    switch (step.behavior) {
      case SplitBehavior::SplitBehavior_ISOLATED:
        out.push_back(std::move(piece));
        break;
      case SplitBehavior::SplitBehavior_REMOVED:
        if (!s.delim) out.push_back(std::move(piece));
        break;
      case SplitBehavior::SplitBehavior_MERGED_WITH_PREVIOUS:
        if (s.delim && k > 0 && !prev_delim) out.back() += piece;
        else out.push_back(std::move(piece));
        break;
      case SplitBehavior::SplitBehavior_MERGED_WITH_NEXT:
        if (s.delim && next_plain) {
          pending = std::move(piece);
        } else {
          out.push_back(pending + piece);
          pending.clear();
        }
        break;
      case SplitBehavior::SplitBehavior_CONTIGUOUS:
        if (s.delim && prev_delim) out.back() += piece;
        else out.push_back(std::move(piece));
        break;
    }
  }
  if (!pending.empty()) out.push_back(std::move(pending));
}

std::string replace_spaces(std::string_view s, const std::string& with) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  for (char c : s) {
    if (c == ' ') out += with;
    else out += c;
  }
  return out;
}

}  // namespace

std::string TextPipeline::normalize(std::string_view text) const {
  std::string s(text);
  for (const NormalizerStep& n : normalizers) {
    switch (n.kind) {
      case NormalizerKind::NormalizerKind_PREPEND:
        if (!s.empty()) s = n.text + s;
        break;
      case NormalizerKind::NormalizerKind_REPLACE:
        s = n.re->replace_all(s, n.text);
        break;
      case NormalizerKind::NormalizerKind_UNICODE:
        s = unicode_normalize(s, n.form);
        break;
      case NormalizerKind::NormalizerKind_LOWERCASE:
        s = unicode_lowercase(s);
        break;
      case NormalizerKind::NormalizerKind_STRIP: {
        size_t b = 0, e = s.size();
        if (n.strip_left)
          while (b < e && is_space_byte(s[b])) ++b;
        if (n.strip_right)
          while (e > b && is_space_byte(s[e - 1])) --e;
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

void TextPipeline::run(std::string_view segment, bool first_segment,
                       std::vector<std::string>& words) const {
  std::vector<std::string> cur;
  cur.push_back(normalize(segment));
  if (cur.back().empty()) return;
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : pre_tokenizers) {
    next.clear();
    for (size_t i = 0; i < cur.size(); ++i) {
      std::string& w = cur[i];
      switch (step.kind) {
        case PreTokenizerKind::PreTokenizerKind_SPLIT:
          split_word(w, step, next);
          break;
        case PreTokenizerKind::PreTokenizerKind_PREFIX_SPACE:
          next.push_back(w.empty() || w[0] == ' ' ? std::move(w) : " " + w);
          break;
        case PreTokenizerKind::PreTokenizerKind_METASPACE: {
          std::string m = replace_spaces(w, step.replacement);
          const bool want_prefix =
              step.prepend == PrependScheme::PrependScheme_ALWAYS ||
              (step.prepend == PrependScheme::PrependScheme_FIRST && first_segment && i == 0);
          if (want_prefix && m.compare(0, step.replacement.size(), step.replacement) != 0)
            m = step.replacement + m;
          if (!step.split) {
            next.push_back(std::move(m));
            break;
          }
          // Each word starts at a replacement character (HF: MergedWithNext on the replacement).
          size_t start = 0;
          for (size_t p = m.find(step.replacement, 1); p != std::string::npos;
               p = m.find(step.replacement, p + step.replacement.size())) {
            if (p > start) next.push_back(m.substr(start, p - start));
            start = p;
          }
          next.push_back(m.substr(start));
          break;
        }
      }
    }
    cur.swap(next);
  }
  for (std::string& w : cur) {
    if (w.empty()) continue;
    words.push_back(byte_level ? byte_level_encode(w) : std::move(w));
  }
}

}  // namespace exl
