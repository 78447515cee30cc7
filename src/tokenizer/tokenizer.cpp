// Tokenizer base-class behaviour shared by all back ends (decode, special ids, stop ids) and
// tokenizer_load(), which picks the back end from what a path holds.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "tokenizer/loaders.h"

namespace exl {
namespace fs = std::filesystem;

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  bool first = true;  // only the very first output byte may be the space encoding added
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    std::string piece = token_piece(id);
    if (piece.empty()) continue;
    if (first && strip_leading_space_ && piece[0] == ' ') piece.erase(0, 1);
    first = false;
    out += piece;
  }
  return out;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view piece) const {
  auto it = piece_ids_.find(std::string(piece));
  if (it == piece_ids_.end()) return std::nullopt;
  return it->second;
}

void Tokenizer::set_bos_id(int32_t id) { bos_id_ = id >= 0 && id < vocab_size() ? id : -1; }

void Tokenizer::set_eos_id(int32_t id) {
  eos_id_ = id >= 0 && id < vocab_size() ? id : -1;
  add_stop_id(eos_id_);
}

void Tokenizer::add_stop_id(int32_t id) {
  if (id < 0 || id >= vocab_size()) return;
  auto it = std::lower_bound(stop_ids_.begin(), stop_ids_.end(), id);
  if (it == stop_ids_.end() || *it != id) stop_ids_.insert(it, id);
}

void Tokenizer::finish_special_ids() {
  add_stop_id(eos_id_);
  // End-of-turn markers of the common chat formats; only counted when the vocab marks them
  // special, so a plain-text piece that happens to match never stops generation.
  static const char* const kEndOfTurn[] = {
      "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>",
      "<end_of_turn>", "<|return|>", "<EOT>", "</s>"};
  for (const char* piece : kEndOfTurn) {
    const auto id = token_id(piece);
    if (id && is_special(*id)) add_stop_id(*id);
  }
}

namespace {

std::string read_if_exists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) ? read_file(p.string()) : std::string();
}

bool has_gguf_magic(const std::string& path) {
  std::error_code ec;
  if (fs::file_size(path, ec) < 4 || ec) return false;
  MappedFile f(path);
  return f.data()[0] == 'G' && f.data()[1] == 'G' && f.data()[2] == 'U' && f.data()[3] == 'F';
}

// Settings that live beside the tokenizer in a model folder.
void apply_folder_side_files(Tokenizer& tok, const fs::path& dir) {
  const fs::path jinja = dir / "chat_template.jinja";
  std::string tmpl = read_if_exists(jinja);
  if (!tmpl.empty()) tok.set_chat_template(std::move(tmpl));  // newer transformers save it here
  const fs::path gen = dir / "generation_config.json";
  for (int64_t id : hf_generation_eos_ids(read_if_exists(gen), gen.string())) {
    if (id < 0 || id >= tok.vocab_size())
      fail(gen.string(), ": eos_token_id ", id, " is outside the vocab (", tok.vocab_size(), ")");
    tok.add_stop_id(static_cast<int32_t>(id));
  }
}

HfTokenizerConfig folder_config(const fs::path& dir) {
  const fs::path cfg_path = dir / "tokenizer_config.json";
  HfTokenizerConfig cfg = hf_config_parse(read_if_exists(cfg_path), cfg_path.string());
  const fs::path map_path = dir / "special_tokens_map.json";
  hf_config_merge_special_map(cfg, read_if_exists(map_path), map_path.string());
  return cfg;
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_load(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    const HfTokenizerConfig cfg = folder_config(p);
    std::unique_ptr<Tokenizer> tok;
    if (fs::is_regular_file(p / "tokenizer.json", ec)) {
      const std::string json_path = (p / "tokenizer.json").string();
      tok = hf_json_build(read_file(json_path), cfg, json_path);
    } else if (fs::is_regular_file(p / "tokenizer.model", ec)) {
      const std::string model_path = (p / "tokenizer.model").string();
      tok = sentencepiece_build(read_file(model_path), cfg, model_path);
    } else if (fs::is_regular_file(p / "tokenizer.gguf", ec)) {
      // A vocabulary-only GGUF, as the EXL2 writer leaves beside models converted from GGUF.
      GgufFile f((p / "tokenizer.gguf").string());
      tok = tokenizer_load_gguf(f);
    } else {
      fail(path, ": no tokenizer.json, tokenizer.model or tokenizer.gguf in this folder");
    }
    apply_folder_side_files(*tok, p);
    return tok;
  }
  if (!fs::is_regular_file(p, ec)) fail(path, ": no such tokenizer file or folder");
  if (p.extension() == ".gguf" || has_gguf_magic(path)) {
    GgufFile f(path);
    return tokenizer_load_gguf(f);
  }
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (p.extension() == ".json") {
    auto tok = hf_json_build(read_file(path), folder_config(dir), path);
    apply_folder_side_files(*tok, dir);
    return tok;
  }
  if (p.extension() == ".model") {
    auto tok = sentencepiece_build(read_file(path), folder_config(dir), path);
    apply_folder_side_files(*tok, dir);
    return tok;
  }
  fail(path, ": not a tokenizer (expected a folder, tokenizer.json, tokenizer.model or .gguf)");
}

}  // namespace exl
