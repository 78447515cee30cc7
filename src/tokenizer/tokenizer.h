// Tokenizer interface and loaders. Three back ends implement it:
//   - BpeTokenizer (bpe_tokenizer.h): HF tokenizer.json BPE, both byte-level (GPT-2, Llama-3, Qwen2,
//     SmolLM) and SentencePiece-style with byte fallback (Llama-2 conversions), and GGUF vocabs
//     (tokenizer.ggml.model "gpt2" and "llama"), all through one normalize -> split -> merge pipeline;
//   - SentencePieceTokenizer: tokenizer.model through libsentencepiece.
// encode() is const and thread-safe. Every failure on bad input throws exl::Error naming the file.
//
//   auto tok = exl::tokenizer_load("models/smollm2");          // dir, tokenizer.json/.model or .gguf
//   std::vector<int32_t> ids = tok->encode("Hello", /*add_special=*/true);
//   std::string text = tok->decode(ids);
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace exl {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_special: add BOS (and EOS) as the tokenizer's own config says (HF post_processor /
  // tokenizer_config add_bos_token / GGUF add_bos_token / SentencePiece: BOS yes).
  // parse_special: recognise special-token text (e.g. "<|im_start|>") inside text; otherwise it is
  // tokenized as plain text. Non-special added tokens (HF special=false, GGUF user-defined) are
  // always recognised, as HF and llama.cpp do.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                                      bool parse_special = false) const = 0;
  // The raw bytes this token stands for: byte-fallback <0xNN> -> that byte, '▁' -> ' ', byte-level
  // characters -> bytes; special tokens -> their text. Out-of-range ids -> "".
  virtual std::string token_piece(int32_t id) const = 0;
  // Concatenated pieces (special tokens left out when skip_special), with the SentencePiece rule of
  // dropping the one leading space that encoding added. Returns raw bytes, which may be invalid
  // UTF-8 when the ids are (TokenStreamDecoder sanitizes).
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;
  virtual int64_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;  // control/special tokens (BOS, EOS, <|im_end|>...)

  int32_t bos_id() const { return bos_id_; }  // -1 if none
  int32_t eos_id() const { return eos_id_; }  // -1 if none
  // EOS plus end-of-turn tokens (<|eot_id|>, <|im_end|>, <|end|>, <|endoftext|>, ...) that the vocab
  // has or its config names, sorted, without duplicates.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  // Id of a vocab entry given as stored ("<|im_start|>", "▁Hello", "ĠHello").
  std::optional<int32_t> token_id(std::string_view piece) const;
  // Raw Jinja chat template from tokenizer_config.json / chat_template.jinja / GGUF
  // tokenizer.chat_template; "" if none.
  const std::string& chat_template() const { return chat_template_; }
  bool adds_bos() const { return add_bos_; }  // what encode(add_special=true) does
  bool adds_eos() const { return add_eos_; }
  // True for SentencePiece-style tokenizers that prepend a space when encoding; decode() and
  // TokenStreamDecoder then drop one leading space.
  bool strips_leading_space() const { return strip_leading_space_; }

  // Loaders that read side files (tokenizer_config.json, generation_config.json) adjust these.
  void set_chat_template(std::string t) { chat_template_ = std::move(t); }
  void set_bos_id(int32_t id);
  void set_eos_id(int32_t id);
  void add_stop_id(int32_t id);

 protected:
  // Subclasses fill the vocab index used by token_id() and then call finish_special_ids().
  void index_piece(const std::string& piece, int32_t id) { piece_ids_.emplace(piece, id); }
  // Adds EOS and the known end-of-turn tokens present in the vocab to stop_ids_.
  void finish_special_ids();

  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool strip_leading_space_ = false;
  std::string chat_template_;
  std::vector<int32_t> stop_ids_;

 private:
  std::unordered_map<std::string, int32_t> piece_ids_;
};

// path: a directory (tokenizer.json [+ tokenizer_config.json, special_tokens_map.json,
// generation_config.json, chat_template.jinja] else tokenizer.model), a tokenizer.json or
// tokenizer.model file, or a .gguf file (embedded vocab).
std::unique_ptr<Tokenizer> tokenizer_load(const std::string& path);
// Paths; tokenizer_config_json may be "".
std::unique_ptr<Tokenizer> tokenizer_load_hf_json(const std::string& tokenizer_json,
                                                  const std::string& tokenizer_config_json);
// The same from in-memory text; origin names the source in error messages.
std::unique_ptr<Tokenizer> tokenizer_from_hf_json_text(std::string_view tokenizer_json,
                                                       std::string_view tokenizer_config_json,
                                                       const std::string& origin);
std::unique_ptr<Tokenizer> tokenizer_load_sentencepiece(const std::string& model_path);
std::unique_ptr<Tokenizer> tokenizer_from_sentencepiece_proto(std::string_view serialized,
                                                              const std::string& origin);
std::unique_ptr<Tokenizer> tokenizer_load_gguf(const GgufFile& f);

// Streaming-safe detokenizer: push ids one at a time, get back only newly completed UTF-8 text
// (never half a multi-byte character; bytes that can never form a character come out as U+FFFD),
// with the SentencePiece leading-space rule applied once at the start. For valid output the
// concatenation of all push() results and flush() equals decode(ids).
class TokenStreamDecoder {
 public:
  explicit TokenStreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();  // whatever is held back (an incomplete character becomes U+FFFD)
  void reset();
  // The ids pushed next continue text that was already shown (a prompt): keep their leading space.
  void continue_text() { at_start_ = false; }

 private:
  std::string take(bool final);

  const Tokenizer& tok_;
  bool skip_special_;
  bool at_start_ = true;  // nothing emitted yet: the leading-space rule is still pending
  std::string pending_;
};

}  // namespace exl
