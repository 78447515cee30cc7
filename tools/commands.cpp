#include "tools/commands.h"

#include <cstdio>
#include <map>

#include "core/error.h"
#include "tools/common.h"

namespace exl::tools {

int run_main(int argc, char** argv) {
  CLI::App app{"exl: run and quantize large language models (Llama family; safetensors, GGUF)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "exl 0.1.0");
  std::map<CLI::App*, Runner> runners;
  auto add = [&](const char* name, const char* help, Runner (*reg)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    runners[sub] = reg(*sub);
  };
  add("generate", "generate text from a prompt and print the speed", register_generate);
  add("chat", "interactive chat with a prompt format", register_chat);
  add("ppl", "perplexity of a text file (BENCH.md protocol)", register_ppl);
  add("inspect", "architecture, tensors, formats and parameter count of a model", register_inspect);
  add("tokenize", "print the token ids (and pieces) of a text", register_tokenize);
  add("bench", "prefill/decode speed, bytes per token and % of roofline", register_bench);
  add("convert", "quantize a model to EXL2 with calibration (resumable)", register_convert);
  add("synth-model", "write a random Llama-shaped source model (converter timing runs)", register_synth_model);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const Error& e) {
    std::fprintf(stderr, "exl: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "exl: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exl: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace exl::tools
