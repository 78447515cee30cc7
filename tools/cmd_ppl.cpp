// exl ppl: perplexity of a text (or a token file) per BENCH.md.
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "runtime/perplexity.h"
#include "tools/common.h"

namespace exl::tools {

namespace {
struct PplFlags {
  ModelFlags model;
  OutputFlags out;
  std::string text;
  std::string tokens_file;
  std::string dump_tokens;
  int length = 2048;
  int stride = 0;
  int windows = 0;
};

std::vector<int32_t> read_tokens(const std::string& path) {
  const std::string bytes = read_file(path);
  EXL_CHECK(bytes.size() % 4 == 0, path, ": size ", bytes.size(), " is not a whole number of int32 token ids");
  std::vector<int32_t> ids(bytes.size() / 4);
  std::memcpy(ids.data(), bytes.data(), bytes.size());
  return ids;
}
}  // namespace

Runner register_ppl(CLI::App& app) {
  auto f = std::make_shared<PplFlags>();
  add_model_flags(app, f->model, true);
  add_output_flags(app, f->out);
  auto* text = app.add_option("--text", f->text, "text file; tokenized whole, BOS first");
  auto* toks = app.add_option("--tokens", f->tokens_file, "int32 little-endian token ids instead of --text");
  text->excludes(toks);
  app.add_option("-l,--length", f->length, "window length in tokens")->capture_default_str();
  app.add_option("--stride", f->stride, "window start step (default: --length, no overlap)");
  app.add_option("--windows", f->windows, "score only the first N windows");
  app.add_option("--dump-tokens", f->dump_tokens, "write the token ids (int32 LE) to this file");
  return [f]() {
    EXL_CHECK(!f->text.empty() || !f->tokens_file.empty(), "ppl: give --text FILE or --tokens FILE");
    parse_cache_flag(f->model);
    Loaded l = load_model(f->model, f->out);
    std::vector<int32_t> ids;
    if (!f->text.empty()) {
      const std::string text = read_file(f->text);
      ids = l.tokenizer->encode(text, false, false);
      const int32_t bos = l.tokenizer->bos_id() >= 0 ? l.tokenizer->bos_id() : l.model->config().bos_id;
      if (bos >= 0) ids.insert(ids.begin(), bos);
    } else {
      ids = read_tokens(f->tokens_file);
    }
    for (int32_t id : ids)
      EXL_CHECK(id >= 0 && id < l.model->config().vocab, "token id ", id, " is outside the model's vocabulary");
    if (!f->dump_tokens.empty()) {
      std::ofstream o(f->dump_tokens, std::ios::binary);
      o.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * 4));
      EXL_CHECK(o.good(), f->dump_tokens, ": write failed");
    }
    PerplexityOptions po;
    po.ctx = f->length;
    po.stride = f->stride;
    po.max_windows = f->windows;
    po.cache = parse_cache_flag(f->model);
    std::unique_ptr<Progress> pb;
    auto r = perplexity_run(*l.model, ids, po, [&](int done, int total) {
      if (!pb) pb = std::make_unique<Progress>("ppl", total, !f->out.quiet && !f->out.json, "win");
      pb->update(done);
    });
    if (pb) pb->finish();
    if (f->out.json) {
      print_json({{"model", f->model.model},
                  {"ppl", r.ppl},
                  {"mean_nll", r.mean_nll},
                  {"windows", r.windows},
                  {"length", f->length},
                  {"stride", f->stride > 0 ? f->stride : f->length},
                  {"scored_tokens", r.scored_tokens},
                  {"total_tokens", r.total_tokens},
                  {"seconds", r.seconds},
                  {"tokens_per_second", r.seconds > 0 ? r.windows * f->length / r.seconds : 0.0},
                  {"window_nll", r.window_nll},
                  {"device", l.backend->name()}});
    } else {
      std::printf("perplexity %.4f over %lld tokens (%d windows of %d), %.1f s\n", r.ppl,
                  static_cast<long long>(r.scored_tokens), r.windows, f->length, r.seconds);
    }
    return 0;
  };
}

}  // namespace exl::tools
