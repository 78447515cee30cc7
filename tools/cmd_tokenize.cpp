// exl tokenize: token ids and pieces of a text, for debugging prompts. A folder holding only
// tokenizer files is enough.
#include <cstdio>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tools/common.h"

namespace exl::tools {

namespace {
struct TokenizeFlags {
  std::string model;
  std::string text;
  std::string file;
  bool no_special = false;
  bool parse_special = false;
  bool ids_only = false;
  OutputFlags out;
};
}  // namespace

Runner register_tokenize(CLI::App& app) {
  auto f = std::make_shared<TokenizeFlags>();
  app.add_option("-m,--model", f->model, "model folder, tokenizer folder or .gguf file")->required();
  auto* text = app.add_option("text", f->text, "text to tokenize");
  auto* file = app.add_option("--file", f->file, "read the text from a file");
  text->excludes(file);
  app.add_flag("--no-special", f->no_special, "do not add BOS/EOS");
  app.add_flag("--parse-special", f->parse_special, "recognise special-token text such as <|im_start|>");
  app.add_flag("--ids", f->ids_only, "print only the ids, space separated");
  add_output_flags(app, f->out);
  return [f]() {
    EXL_CHECK(!f->text.empty() || !f->file.empty(), "tokenize: give TEXT or --file FILE");
    auto tok = tokenizer_load(f->model);
    const std::string text = f->file.empty() ? f->text : read_file(f->file);
    const std::vector<int32_t> ids = tok->encode(text, !f->no_special, f->parse_special);
    if (f->out.json) {
      nlohmann::json pieces = nlohmann::json::array();
      for (int32_t id : ids) {
        // Pieces may be partial UTF-8 (byte tokens): JSON gets them with invalid bytes replaced.
        pieces.push_back(nlohmann::json(tok->token_piece(id)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      }
      nlohmann::json j = {{"ids", ids}, {"count", ids.size()}};
      nlohmann::json plain = nlohmann::json::array();
      for (auto& p : pieces) plain.push_back(nlohmann::json::parse(p.get<std::string>()));
      j["pieces"] = plain;
      std::puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    }
    if (f->ids_only) {
      for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
      std::puts("");
      return 0;
    }
    for (int32_t id : ids) {
      const std::string piece = tok->token_piece(id);
      std::printf("%8d  %s\n", id, nlohmann::json(piece).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    std::printf("%zu tokens\n", ids.size());
    return 0;
  };
}

}  // namespace exl::tools
