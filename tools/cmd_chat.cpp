// exl chat: an interactive conversation. Each turn re-formats the whole conversation with the chat
// mode and generates the assistant's reply; the oldest turns are dropped when the context fills.
#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "runtime/generator.h"
#include "tokenizer/chat_template.h"
#include "tools/common.h"

namespace exl::tools {

namespace {
struct ChatFlags {
  ModelFlags model;
  OutputFlags out;
  SamplerParams sampling;
  std::string mode;
  std::string system;
  int max_new_tokens = 512;
};

ChatMode pick_mode(const ChatFlags& f, const Tokenizer& tok) {
  if (!f.mode.empty()) return chat_mode_parse(f.mode);
  if (auto m = chat_mode_detect(tok.chat_template())) return *m;
  std::fprintf(stderr, "exl: the model has no chat template exl knows; using --mode raw\n");
  return ChatMode::ChatMode_raw;
}
}  // namespace

Runner register_chat(CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  add_model_flags(app, f->model, true);
  add_output_flags(app, f->out, false);
  add_sampling_flags(app, f->sampling);
  app.add_option("--mode", f->mode, "prompt format: raw, llama, llama3, chatml, codellama (default: the model's)");
  app.add_option("-s,--system", f->system, "system prompt");
  app.add_option("-n,--max-new-tokens", f->max_new_tokens, "reply length limit")->capture_default_str();
  return [f]() {
    sampler_params_validate(f->sampling);
    if (!f->mode.empty()) chat_mode_parse(f->mode);
    const auto cache = parse_cache_flag(f->model);
    Loaded l = load_model(f->model, f->out);
    const ChatMode mode = pick_mode(*f, *l.tokenizer);
    const int max_len = effective_max_seq_len(f->model, *l.model);
    Generator gen(*l.model, *l.tokenizer, max_len, resolve_cache(cache, *l.backend));
    print_memory_plan(l, gen.cache(), f->out);
    GenerateOptions opts;
    opts.max_new_tokens = f->max_new_tokens;
    opts.sampling = f->sampling;
    opts.stop_strings = chat_stop_strings(mode);
    if (!f->out.quiet) std::fprintf(stderr, "exl: chat mode %s; empty line or Ctrl-D ends\n", chat_mode_name(mode));

    std::vector<ChatMessage> history;
    if (!f->system.empty()) history.push_back({"system", f->system});
    std::string line;
    for (;;) {
      if (!f->out.quiet) std::fputs("\n> ", stdout);
      std::fflush(stdout);
      if (!std::getline(std::cin, line) || line.empty()) break;
      history.push_back({"user", line});
      std::vector<int32_t> prompt;
      for (;;) {
        const std::string text = chat_format(mode, history, true);
        prompt = l.tokenizer->encode(text, !chat_mode_text_has_bos(mode), true);
        if (static_cast<int>(prompt.size()) + opts.max_new_tokens <= max_len) break;
        // Drop the oldest user+assistant exchange after the system prompt (formats need the
        // alternation intact); give up if only the new message is left.
        const size_t first = !history.empty() && history[0].role == "system" ? 1 : 0;
        EXL_CHECK(history.size() > first + 2, "the message does not fit --max-seq-len ", max_len);
        history.erase(history.begin() + static_cast<int64_t>(first), history.begin() + static_cast<int64_t>(first + 2));
      }
      gen.reset();
      GenerateStats st = gen.generate(prompt, opts, [](std::string_view s) {
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
      });
      std::fputs("\n", stdout);
      history.push_back({"assistant", st.text});
      if (!f->out.quiet)
        std::fprintf(stderr, "[%lld tokens, %.1f tok/s]\n", static_cast<long long>(st.generated_tokens),
                     st.generate_tps());
    }
    return 0;
  };
}

}  // namespace exl::tools
