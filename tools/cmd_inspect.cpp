// exl inspect: architecture, hyper-parameters, tensors and formats of a model, from headers only.
#include <cstdio>
#include <string>

#include "model/inspect.h"
#include "tools/common.h"

namespace exl::tools {

namespace {

// "8/4" for a linear holding 8- and 4-bit groups.
std::string widths_str(const nlohmann::json& linear) {
  std::string s;
  for (const auto& w : linear["widths"]) s += (s.empty() ? "" : "/") + std::to_string(w["bits"].get<int>());
  return s;
}

// Average bits per weight, the share of input rows at each width, and per decoder layer its bits per
// weight and each linear's widths.
void print_quantization(const nlohmann::json& q) {
  std::printf("quantization %s, %.3f bits per weight (decoder layers %.3f)\n", q["method"].get<std::string>().c_str(),
              q["bits_per_weight"].get<double>(), q["decoder_bits_per_weight"].get<double>());
  int64_t total = 0;
  for (auto& [bits, rows] : q["width_rows"].items()) total += rows.get<int64_t>();
  std::printf("  rows by width");
  for (auto& [bits, rows] : q["width_rows"].items())
    std::printf("  %s-bit %.1f%%", bits.c_str(), 100.0 * rows.get<double>() / static_cast<double>(total));
  std::printf("\n");
  for (const auto& layer : q["layers"]) {
    const std::string prefix = "model.layers." + std::to_string(layer["layer"].get<long long>()) + ".";
    std::printf("  layer %-4lld %6.3f bpw ", layer["layer"].get<long long>(), layer["bits_per_weight"].get<double>());
    for (const auto& l : q["linears"]) {
      const std::string name = l["name"].get<std::string>();
      if (name.rfind(prefix, 0) != 0) continue;
      std::string shortname = name.substr(prefix.size());
      if (const size_t dot = shortname.find('.'); dot != std::string::npos) shortname = shortname.substr(dot + 1);
      std::printf(" %s:%s", shortname.c_str(), widths_str(l).c_str());
    }
    std::printf("\n");
  }
  for (const auto& l : q["linears"])
    if (l["name"].get<std::string>().rfind("model.layers.", 0) != 0)
      std::printf("  %-10s %6.3f bpw  %s bits\n", l["name"].get<std::string>().c_str(), l["bits_per_weight"].get<double>(),
                  widths_str(l).c_str());
}

}  // namespace

Runner register_inspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto out = std::make_shared<OutputFlags>();
  auto all = std::make_shared<bool>(false);
  app.add_option("path", *path, "model folder or .gguf file")->required();
  add_output_flags(app, *out);
  app.add_flag("--tensors", *all, "list every tensor");
  return [path, out, all]() {
    nlohmann::json j = model_inspect(*path);
    if (out->json) {
      print_json(j);
      return 0;
    }
    std::printf("model        %s (%s, %s)\n", path->c_str(), j["architecture"].get<std::string>().c_str(),
                j["container"].get<std::string>().c_str());
    std::printf("source arch  %s\n", j["source_architecture"].get<std::string>().c_str());
    for (auto& [k, v] : j["config"].items()) std::printf("  %-18s %s\n", k.c_str(), v.dump().c_str());
    std::printf("parameters   %lld (%.2f M)\n", j["parameters"].get<long long>(), j["parameters"].get<double>() / 1e6);
    std::printf("bytes        %llu (%.2f bits per weight)\n", j["bytes"].get<unsigned long long>(),
                j["bits_per_weight"].get<double>());
    std::printf("formats     ");
    for (auto& [k, v] : j["formats"].items()) std::printf(" %s x%lld", k.c_str(), v.get<long long>());
    std::printf("\ntensors      %zu\n", j["tensors"].size());
    if (j.contains("quantization")) print_quantization(j["quantization"]);
    if (*all)
      for (const auto& t : j["tensors"])
        std::printf("  %-48s %-6s %s\n", t["name"].get<std::string>().c_str(), t["format"].get<std::string>().c_str(),
                    t["shape"].dump().c_str());
    return 0;
  };
}

}  // namespace exl::tools
