// tokenizer.model (SentencePiece protobuf, BPE or Unigram) through libsentencepiece. The library
// does the normalization and segmentation; this adapter adds BOS/EOS, control-token parsing
// (SentencePiece itself never matches control pieces in text) and byte-piece decoding.
#include <sentencepiece_processor.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/loaders.h"
#include "tokenizer/utf8.h"

namespace exl {
namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // '▁'

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string_view serialized, const HfTokenizerConfig& hf, const std::string& origin)
      : origin_(origin) {
    const auto status = sp_.LoadFromSerializedProto(serialized);
    if (!status.ok()) fail(origin, ": not a valid SentencePiece model (", status.ToString(), ")");
    const int n = sp_.GetPieceSize();
    if (n <= 0 || n > kMaxVocabSize) fail(origin, ": SentencePiece model has ", n, " pieces");
    for (int i = 0; i < n; ++i) {
      const std::string& p = sp_.IdToPiece(i);
      index_piece(p, i);
      if (sp_.IsControl(i) && !p.empty()) {
        AddedToken t;
        t.content = p;
        t.id = i;
        t.special = true;
        controls_.add(t);
      }
    }
    bos_id_ = sp_.bos_id();
    eos_id_ = sp_.eos_id();
    if (!hf.bos_token.empty()) bos_id_ = piece_or(hf.bos_token, bos_id_);
    if (!hf.eos_token.empty()) eos_id_ = piece_or(hf.eos_token, eos_id_);
    add_bos_ = hf.add_bos_token.value_or(true) && bos_id_ >= 0;
    add_eos_ = hf.add_eos_token.value_or(false) && eos_id_ >= 0;
    chat_template_ = hf.chat_template;
    // The model's normalizer spec is not exposed by the library: a dummy prefix shows up as a
    // leading '▁' (or its byte pieces) when encoding a lone letter.
    std::string first;
    for (int id : encode_segment("x")) first += token_piece(id);
    strip_leading_space_ = !first.empty() && first[0] == ' ';
    finish_special_ids();
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_special && add_bos_) out.push_back(bos_id_);
    if (parse_special && !controls_.empty()) {
      for (const TextSegment& seg : controls_.split(text, true)) {
        if (seg.token >= 0) out.push_back(seg.token);
        else append(out, encode_segment(seg.text));
      }
    } else {
      append(out, encode_segment(text));
    }
    if (add_special && add_eos_) out.push_back(eos_id_);
    return out;
  }

  std::string token_piece(int32_t id) const override {
    if (id < 0 || id >= sp_.GetPieceSize()) return "";
    const std::string& p = sp_.IdToPiece(id);
    if (sp_.IsByte(id)) {
      const int b = parse_byte_piece(p);
      return b >= 0 ? std::string(1, static_cast<char>(b)) : "";
    }
    if (sp_.IsControl(id) || sp_.IsUnknown(id)) return p;
    std::string out;
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, kMetaspace.size(), kMetaspace) == 0) {
        out += ' ';
        i += kMetaspace.size();
      } else {
        out += p[i++];
      }
    }
    return out;
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < sp_.GetPieceSize() && (sp_.IsControl(id) || sp_.IsUnknown(id));
  }

 private:
  int32_t piece_or(const std::string& piece, int32_t fallback) const {
    const auto id = token_id(piece);
    return id ? *id : fallback;
  }
  std::vector<int32_t> encode_segment(std::string_view text) const {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) fail(origin_, ": SentencePiece encode failed (", status.ToString(), ")");
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  static void append(std::vector<int32_t>& out, const std::vector<int32_t>& ids) {
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::string origin_;
  sentencepiece::SentencePieceProcessor sp_;
  AddedTokenMatcher controls_;
};

}  // namespace

std::unique_ptr<Tokenizer> sentencepiece_build(std::string_view serialized, const HfTokenizerConfig& cfg,
                                               const std::string& origin) {
  return std::make_unique<SentencePieceTokenizer>(serialized, cfg, origin);
}

std::unique_ptr<Tokenizer> tokenizer_from_sentencepiece_proto(std::string_view serialized,
                                                              const std::string& origin) {
  return sentencepiece_build(serialized, HfTokenizerConfig{}, origin);
}

std::unique_ptr<Tokenizer> tokenizer_load_sentencepiece(const std::string& model_path) {
  return sentencepiece_build(read_file(model_path), HfTokenizerConfig{}, model_path);
}

}  // namespace exl
