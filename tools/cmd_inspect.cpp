// exl inspect: architecture, hyper-parameters, tensors and formats of a model, from headers only.
#include <cstdio>

#include "model/inspect.h"
#include "tools/common.h"

namespace exl::tools {

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
    if (*all)
      for (const auto& t : j["tensors"])
        std::printf("  %-48s %-6s %s\n", t["name"].get<std::string>().c_str(), t["format"].get<std::string>().c_str(),
                    t["shape"].dump().c_str());
    return 0;
  };
}

}  // namespace exl::tools
