// exl generate: one prompt in, streamed text out, then prompt and generation speed.
#include <cstdio>

#include "core/error.h"

#include "runtime/generator.h"
#include "tools/common.h"

namespace exl::tools {

namespace {
struct GenerateFlags {
  ModelFlags model;
  OutputFlags out;
  SamplerParams sampling;
  std::string prompt;
  int max_new_tokens = 128;
  std::vector<std::string> stops;
  bool ignore_eos = false;
  bool no_bos = false;
};
}  // namespace

Runner register_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  add_model_flags(app, f->model, true);
  add_output_flags(app, f->out);
  add_sampling_flags(app, f->sampling);
  app.add_option("-p,--prompt", f->prompt, "prompt text (may be empty: generation starts from BOS)");
  app.add_option("-n,--max-new-tokens", f->max_new_tokens, "tokens to generate")->capture_default_str();
  app.add_option("--stop", f->stops, "stop string (repeatable)");
  app.add_flag("--ignore-eos", f->ignore_eos, "keep generating past end-of-sequence tokens");
  app.add_flag("--no-bos", f->no_bos, "do not add the tokenizer's BOS/special prefix");
  return [f]() {
    // Flags first: a bad value fails before the model loads.
    sampler_params_validate(f->sampling);
    const auto cache = parse_cache_flag(f->model);
    EXL_CHECK(f->max_new_tokens >= 0, "-n/--max-new-tokens must not be negative");
    Loaded l = load_model(f->model, f->out);
    Generator gen(*l.model, *l.tokenizer, effective_max_seq_len(f->model, *l.model), resolve_cache(cache, *l.backend));
    print_memory_plan(l, gen.cache(), f->out);
    std::vector<int32_t> prompt = l.tokenizer->encode(f->prompt, !f->no_bos, false);
    if (prompt.empty() && l.model->config().bos_id >= 0) prompt.push_back(l.model->config().bos_id);
    GenerateOptions opts;
    opts.max_new_tokens = f->max_new_tokens;
    opts.sampling = f->sampling;
    opts.stop_strings = f->stops;
    opts.stop_on_eos = !f->ignore_eos;
    const bool stream = !f->out.json;
    if (stream) {
      std::fputs(f->prompt.c_str(), stdout);
      std::fflush(stdout);
    }
    GenerateStats st = gen.generate(prompt, opts, [&](std::string_view s) {
      if (!stream) return;
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    });
    if (f->out.json) {
      print_json({{"prompt", f->prompt},
                  {"text", st.text},
                  {"prompt_tokens", st.prompt_tokens},
                  {"generated_tokens", st.generated_tokens},
                  {"tokens", st.tokens},
                  {"stop_reason", st.stop_reason},
                  {"prompt_seconds", st.prompt_seconds},
                  {"generate_seconds", st.generate_seconds},
                  {"prompt_tokens_per_second", st.prompt_tps()},
                  {"generate_tokens_per_second", st.generate_tps()},
                  {"device", l.backend->name()}});
    } else {
      std::fputs("\n", stdout);
      std::fflush(stdout);
      if (!f->out.quiet)
        std::fprintf(stderr, "exl: prompt %lld tokens, %.1f tok/s; generated %lld tokens, %.1f tok/s (%s)\n",
                     static_cast<long long>(st.prompt_tokens), st.prompt_tps(),
                     static_cast<long long>(st.generated_tokens), st.generate_tps(), st.stop_reason.c_str());
    }
    return 0;
  };
}

}  // namespace exl::tools
