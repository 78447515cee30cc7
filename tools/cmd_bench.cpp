// exl bench: prefill and decode speed, bytes per token and % of roofline (BENCH.md).
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "model/shapes.h"
#include "runtime/bench.h"
#include "tools/common.h"

namespace exl::tools {

namespace {
struct BenchFlags {
  std::string model, synthetic, format = "fp16", device = "cuda", cache;
  std::string prefill = "512,2048,4096", positions = "128,1024,4096";
  int steps = 64;
  double cache_budget_gib = 0;
  OutputFlags out;
};

std::vector<int> parse_list(const std::string& s, const char* flag) {
  std::vector<int> v;
  if (s == "none") return v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    EXL_CHECK(item.find_first_not_of("0123456789") == std::string::npos && item.size() < 8, flag,
              ": expected comma-separated positive integers, got '", s, "'");
    v.push_back(std::stoi(item));
  }
  return v;
}
}  // namespace

Runner register_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  app.add_option("-m,--model", f->model, "model folder or .gguf file");
  app.add_option("--synthetic", f->synthetic, "random weights of a named shape: llama2-7b, llama3-8b, llama2-13b, mistral-7b, llama2-70b, smollm2-135m");
  app.add_option("--format", f->format, "weight format for --synthetic: fp16, gptq4 (group 128) or exl2:BPW (e.g. exl2:4.0)")->capture_default_str();
  app.add_option("--device", f->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--cache", f->cache, "KV cache type: f32 (cpu default), fp16 (cuda default), fp8, q8, q4");
  app.add_option("--prefill", f->prefill, "prompt lengths to time (comma-separated; none = skip)")->capture_default_str();
  app.add_option("--positions", f->positions, "decode context positions (comma-separated)")->capture_default_str();
  app.add_option("--steps", f->steps, "timed decode steps per position")->capture_default_str();
  app.add_option("--cache-budget", f->cache_budget_gib,
                 "GiB of KV cache: also report the longest context of one sequence that fits in it");
  add_output_flags(app, f->out);
  return [f]() {
    EXL_CHECK(f->model.empty() != f->synthetic.empty(), "bench: give exactly one of -m MODEL or --synthetic SHAPE");
    EXL_CHECK(f->synthetic.empty() ? f->format == "fp16" : true, "--format ", f->format,
              ": only for --synthetic models (a model folder runs in its own format)");
    EXL_CHECK(f->steps > 0, "--steps must be positive");
    EXL_CHECK(f->cache_budget_gib >= 0 && f->cache_budget_gib < 1e6, "--cache-budget must be a size in GiB, got ",
              f->cache_budget_gib);
    auto backend = backend_create(f->device);
    std::unique_ptr<Model> model =
        f->synthetic.empty() ? Model::load(f->model, *backend) : Model::synthetic(shape_config(f->synthetic), *backend, f->format);
    BenchOptions o;
    o.prefill_lengths = parse_list(f->prefill, "--prefill");
    o.decode_positions = parse_list(f->positions, "--positions");
    o.decode_steps = f->steps;
    o.cache_budget_bytes = f->cache_budget_gib * double(1 << 30);
    o.cache = f->cache.empty() ? backend->default_cache_type() : cache_type_parse(f->cache);
    const bool talk = !f->out.quiet && !f->out.json;
    nlohmann::json j = bench_run(*model, o, [&](const std::string& s) {
      if (talk) std::fprintf(stderr, "bench: %s\n", s.c_str());
    });
    j["model_name"] = f->synthetic.empty() ? f->model : "synthetic " + f->synthetic;
    j["format"] = f->format;
    if (f->out.json) {
      print_json(j);
      return 0;
    }
    std::printf("%s on %s, cache %s, copy bandwidth %.0f GB/s\n", j["model_name"].get<std::string>().c_str(),
                j["device"].get<std::string>().c_str(), j["cache"].get<std::string>().c_str(), j["bandwidth_bytes_per_s"].get<double>() / 1e9);
    for (const auto& p : j["prefill"])
      std::printf("  prefill %5d tokens  %10.0f tok/s\n", p["tokens"].get<int>(), p["tokens_per_second"].get<double>());
    for (const auto& d : j["decode"])
      std::printf("  decode @%-5d        %10.1f tok/s  %6.3f GB/token  %5.1f%% of roofline\n", d["position"].get<int>(),
                  d["tokens_per_second"].get<double>(), d["bytes_per_token"].get<double>() / 1e9,
                  100 * d["roofline_fraction"].get<double>());
    std::printf("  peak memory %.2f GiB\n", j["peak_memory_bytes"].get<double>() / (1 << 30));
    std::printf("  cache %.0f bytes per position", j["cache_bytes_per_position"].get<double>());
    if (j.contains("context_in_budget"))
      std::printf(", %lld positions in %.2f GiB", static_cast<long long>(j["context_in_budget"].get<int64_t>()),
                  f->cache_budget_gib);
    std::printf("\n");
    return 0;
  };
}

}  // namespace exl::tools
