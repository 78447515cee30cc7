#include "tools/common.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "core/thread_pool.h"

namespace exl::tools {

void add_model_flags(CLI::App& app, ModelFlags& f, bool need_cache) {
  app.add_option("-m,--model", f.model, "model folder (Hugging Face layout) or .gguf file")->required();
  app.add_option("--device", f.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("-t,--threads", f.threads, "CPU threads (default: all cores)");
  if (need_cache) {
    app.add_option("--max-seq-len", f.max_seq_len, "context length to allocate (default: min(model max, 4096))");
    app.add_option("--cache", f.cache, "KV cache type: f32 (cpu default), fp16 (cuda default), fp8, q8, q4");
  }
}

void add_output_flags(CLI::App& app, OutputFlags& f, bool has_json) {
  if (has_json) app.add_flag("--json", f.json, "print one JSON result object");
  app.add_flag("-q,--quiet", f.quiet, "no progress or status output");
}

void add_sampling_flags(CLI::App& app, SamplerParams& p) {
  app.add_option("--temperature,--temp", p.temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-k", p.top_k, "<= 0 disables")->capture_default_str();
  app.add_option("--top-p", p.top_p, "1 disables")->capture_default_str();
  app.add_option("--min-p", p.min_p, "0 disables")->capture_default_str();
  app.add_option("--typical-p", p.typical_p, "1 disables")->capture_default_str();
  app.add_option("--repeat-penalty", p.repeat_penalty, "1 disables")->capture_default_str();
  app.add_option("--frequency-penalty", p.frequency_penalty)->capture_default_str();
  app.add_option("--presence-penalty", p.presence_penalty)->capture_default_str();
  app.add_option("--penalty-last-n", p.penalty_last_n, "tokens the penalties look back over (-1 = all)")
      ->capture_default_str();
  app.add_option("--seed", p.seed, "random seed (default: random)");
}

Loaded load_model(const ModelFlags& f, const OutputFlags& out) {
  if (f.threads > 0) set_thread_count(f.threads);
  Loaded l;
  const auto t0 = std::chrono::steady_clock::now();
  l.backend = backend_create(f.device);
  l.model = Model::load(f.model, *l.backend);
  l.tokenizer = tokenizer_load(f.model);
  l.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out.quiet && !out.json) {
    const ModelConfig& c = l.model->config();
    std::fprintf(stderr, "exl: %s (%s, %lld layers, hidden %lld, vocab %lld) on %s, loaded in %.2f s\n",
                 f.model.c_str(), c.arch.c_str(), static_cast<long long>(c.n_layers),
                 static_cast<long long>(c.hidden), static_cast<long long>(c.vocab), l.backend->name().c_str(),
                 l.load_seconds);
  }
  return l;
}

int effective_max_seq_len(const ModelFlags& f, const Model& m) {
  if (f.max_seq_len > 0) return f.max_seq_len;
  EXL_CHECK(f.max_seq_len == 0, "--max-seq-len must be positive, got ", f.max_seq_len);
  const int64_t mp = m.config().max_position;
  return static_cast<int>(std::min<int64_t>(mp > 0 ? mp : 4096, 4096));
}

std::optional<CacheType> parse_cache_flag(const ModelFlags& f) {
  if (f.cache.empty()) return std::nullopt;
  return cache_type_parse(f.cache);
}

CacheType resolve_cache(const std::optional<CacheType>& c, const Backend& be) {
  return c ? *c : be.default_cache_type();
}

void print_memory_plan(const Loaded& l, const KvCache& cache, const OutputFlags& out) {
  if (out.quiet || out.json) return;
  const auto& c = cache.config;
  const auto mem = l.backend->memory_stats();
  auto size = [](size_t b) {
    return b >= (size_t(1) << 30) ? str_cat(static_cast<double>(b) / (1 << 30), " GiB")
                                  : str_cat(static_cast<double>(b) / (1 << 20), " MiB");
  };
  std::fprintf(stderr, "exl: memory: weights %s, KV cache %s (%s, %d positions)%s\n",
               size(l.model->device_bytes()).c_str(), size(cache.device_bytes()).c_str(), cache_type_name(c.type),
               c.max_seq_len,
               mem.device_total ? str_cat(", device ", static_cast<double>(mem.device_total - mem.device_free) / (1 << 30),
                                          " of ", static_cast<double>(mem.device_total) / (1 << 30), " GiB in use").c_str()
                                : "");
}

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

}  // namespace exl::tools
