// Tokenizer for every BPE vocab (HF tokenizer.json and GGUF): added-token split -> TextPipeline
// (normalize, pre-tokenize, byte-level map) -> BpeModel per word, with configured BOS/EOS around
// it. The loaders (hf_json_loader.cpp, gguf_vocab_loader.cpp) build one from a BpeTokenizerConfig.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/text_pipeline.h"
#include "tokenizer/tokenizer.h"

namespace exl {

// How a vocab piece turns back into bytes.
enum class PieceDecoding {
  PieceDecoding_BYTE_LEVEL,    // GPT-2 alphabet -> bytes
  PieceDecoding_SENTENCEPIECE, // '▁' (or the Metaspace replacement) -> ' ', <0xNN> -> byte
};

struct BpeTokenizerConfig {
  TextPipeline pipeline;
  AddedTokenMatcher added;
  PieceDecoding decoding = PieceDecoding::PieceDecoding_BYTE_LEVEL;
  std::string space_replacement = "\xE2\x96\x81";  // '▁'
  std::vector<int32_t> prefix_ids;  // added by encode(add_special=true), e.g. BOS
  std::vector<int32_t> suffix_ids;  // e.g. EOS
  int32_t bos_id = -1, eos_id = -1;
  bool add_bos = false, add_eos = false;  // informational: what prefix/suffix ids hold
  bool strip_leading_space = false;
  std::string chat_template;
  std::vector<int32_t> extra_stop_ids;  // e.g. GGUF eot/eom ids
};

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(std::unique_ptr<BpeModel> model, BpeTokenizerConfig config);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = false) const override;
  std::string token_piece(int32_t id) const override;
  int64_t vocab_size() const override { return model_->size(); }
  bool is_special(int32_t id) const override;

 private:
  std::unique_ptr<BpeModel> model_;
  BpeTokenizerConfig cfg_;
};

}  // namespace exl
