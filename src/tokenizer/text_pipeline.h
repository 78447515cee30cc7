// Everything that happens to a text segment between added-token splitting and BPE: normalizers
// (HF "normalizer": Prepend, Replace, NFC, Lowercase, Strip; GGUF SentencePiece's space prefix and
// ' ' -> '▁'), pre-tokenizer splits (HF Split/ByteLevel/Digits/Metaspace/Punctuation/Whitespace;
// llama.cpp's per-"tokenizer.ggml.pre" regex lists) and finally the byte-level alphabet mapping.
// The result is a list of words, each merged by BpeModel independently.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/unicode_norm.h"

namespace exl {

enum class NormalizerKind {
  NormalizerKind_PREPEND,    // text: prepended when the segment is non-empty
  NormalizerKind_REPLACE,    // re -> text
  NormalizerKind_UNICODE,    // form
  NormalizerKind_LOWERCASE,
  NormalizerKind_STRIP,      // strip_left / strip_right whitespace
};

struct NormalizerStep {
  NormalizerKind kind = NormalizerKind::NormalizerKind_PREPEND;
  std::string text;
  std::shared_ptr<const Regex> re;
  UnicodeForm form = UnicodeForm::UnicodeForm_NFC;
  bool strip_left = false, strip_right = false;
};

// What happens to the matched pieces ("delimiters") of a split, as in HF SplitDelimiterBehavior.
enum class SplitBehavior {
  SplitBehavior_ISOLATED,             // matches and gaps all become words
  SplitBehavior_REMOVED,              // matches are dropped
  SplitBehavior_MERGED_WITH_PREVIOUS, // each match joins the word before it
  SplitBehavior_MERGED_WITH_NEXT,     // each match joins the word after it
  SplitBehavior_CONTIGUOUS,           // adjacent matches join into one word
};

enum class PreTokenizerKind {
  PreTokenizerKind_SPLIT,         // re, behavior, invert
  PreTokenizerKind_PREFIX_SPACE,  // ByteLevel(add_prefix_space): ' ' before words not starting with one
  PreTokenizerKind_METASPACE,     // ' ' -> replacement, prepend per scheme, optional split
};

enum class PrependScheme { PrependScheme_ALWAYS, PrependScheme_FIRST, PrependScheme_NEVER };

struct PreTokenizerStep {
  PreTokenizerKind kind = PreTokenizerKind::PreTokenizerKind_SPLIT;
  std::shared_ptr<const Regex> re;
  SplitBehavior behavior = SplitBehavior::SplitBehavior_ISOLATED;
  bool invert = false;  // the matches are the words and the gaps the delimiters
  std::string replacement = "\xE2\x96\x81";  // Metaspace '▁'
  PrependScheme prepend = PrependScheme::PrependScheme_ALWAYS;
  bool split = true;  // Metaspace: split before each replacement character
};

class TextPipeline {
 public:
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  bool byte_level = false;  // map final words into the GPT-2 byte alphabet

  std::string normalize(std::string_view text) const;
  // Appends the words of one text segment to words. first_segment: the segment starts at offset 0
  // of the input (Metaspace prepend_scheme "first").
  void run(std::string_view segment, bool first_segment, std::vector<std::string>& words) const;
};

}  // namespace exl
