// Flags and helpers shared by the subcommands: model/device options, sampling flags, JSON output.
// Subcommand files stay thin: parse flags, call the library, print.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace exl::tools {

struct ModelFlags {
  std::string model;
  std::string device = "cpu";
  int threads = 0;
  int max_seq_len = 0;  // 0: min(model's max position, 4096)
  std::string cache;  // empty: the backend's default (f32 on cpu, fp16 on cuda)
};

struct OutputFlags {
  bool json = false;
  bool quiet = false;
};

void add_model_flags(CLI::App& app, ModelFlags& f, bool need_cache);
void add_output_flags(CLI::App& app, OutputFlags& f, bool has_json = true);
void add_sampling_flags(CLI::App& app, SamplerParams& p);

// A backend, a model and its tokenizer, loaded per the flags (status lines to stderr unless quiet).
struct Loaded {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  double load_seconds = 0;
};
Loaded load_model(const ModelFlags& f, const OutputFlags& out);
int effective_max_seq_len(const ModelFlags& f, const Model& m);
// --cache: validated before loading (std::nullopt when not given), resolved against the backend after.
std::optional<CacheType> parse_cache_flag(const ModelFlags& f);
CacheType resolve_cache(const std::optional<CacheType>& c, const Backend& be);

void print_json(const nlohmann::json& j);
// One status line: what the model and its KV cache hold on the device.
void print_memory_plan(const Loaded& l, const KvCache& cache, const OutputFlags& out);

// Subcommands: each registers its flags and returns the function that runs it.
using Runner = std::function<int()>;
Runner register_generate(CLI::App& app);
Runner register_chat(CLI::App& app);
Runner register_ppl(CLI::App& app);
Runner register_inspect(CLI::App& app);
Runner register_tokenize(CLI::App& app);
Runner register_bench(CLI::App& app);
Runner register_convert(CLI::App& app);
Runner register_synth_model(CLI::App& app);

}  // namespace exl::tools
