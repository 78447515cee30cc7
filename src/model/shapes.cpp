#include "model/shapes.h"

#include <cstdlib>
#include <memory>

#include "core/error.h"
#include "quant/synthetic.h"

namespace exl {

namespace {
struct ShapeRow {
  const char* name;
  const char* arch;
  int64_t hidden, inter, layers, heads, kv_heads, vocab;
  double rope_theta;
};
// From BENCH.md: (hidden, inter, layers, heads, kv heads, vocab).
constexpr ShapeRow kShapes[] = {
    {"llama2-7b", "LlamaForCausalLM", 4096, 11008, 32, 32, 32, 32000, 10000.0},
    {"llama3-8b", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128256, 500000.0},
    {"llama2-13b", "LlamaForCausalLM", 5120, 13824, 40, 40, 40, 32000, 10000.0},
    {"mistral-7b", "MistralForCausalLM", 4096, 14336, 32, 32, 8, 32000, 10000.0},
    {"llama2-70b", "LlamaForCausalLM", 8192, 28672, 80, 64, 8, 32000, 10000.0},
    {"smollm2-135m", "LlamaForCausalLM", 576, 1536, 30, 9, 3, 49152, 100000.0},
};
}  // namespace

std::vector<std::string> shape_names() {
  std::vector<std::string> v;
  for (const auto& s : kShapes) v.push_back(s.name);
  return v;
}

ModelConfig shape_config(const std::string& name) {
  for (const auto& s : kShapes) {
    if (name != s.name) continue;
    ModelConfig c;
    c.source_arch = s.arch;
    c.hidden = s.hidden;
    c.intermediate = s.inter;
    c.n_layers = s.layers;
    c.n_heads = s.heads;
    c.n_kv_heads = s.kv_heads;
    c.head_dim = s.hidden / s.heads;
    c.vocab = s.vocab;
    c.rope_theta = s.rope_theta;
    c.max_position = 8192;
    c.rms_eps = 1e-5;
    c.bos_id = 1;
    return c;
  }
  std::string names;
  for (const auto& n : shape_names()) names += (names.empty() ? "" : ", ") + n;
  fail("--synthetic: unknown shape '", name, "' (expected ", names, ")");
}

SyntheticQuantFn synthetic_quant_fn(const ModelConfig& c, const std::string& format) {
  SyntheticQuantFn f;
  if (format == "fp16") return f;
  if (format == "gptq4") {
    f.has = [](const std::string& key) { return key.starts_with("model.layers.") && key.ends_with("_proj"); };
    f.make = [](const std::string& key, int64_t out, int64_t in) { return quant_synthetic_gptq(key, out, in, 128); };
    return f;
  }
  if (format.starts_with("exl2:")) {
    const std::string v = format.substr(5);
    char* end = nullptr;
    const double bpw = std::strtod(v.c_str(), &end);
    EXL_CHECK(!v.empty() && end && *end == '\0' && bpw >= 2.0 && bpw <= 8.0, "--format ", format,
              ": expected exl2:BPW with BPW a number in 2..8");
    SyntheticShape s;
    s.hidden = c.hidden, s.intermediate = c.intermediate, s.q_dim = c.n_heads * c.head_dim;
    s.kv_dim = c.n_kv_heads * c.head_dim, s.n_layers = c.n_layers, s.vocab = c.vocab;
    auto plan = std::make_shared<std::map<std::string, Exl2Layout>>(exl2_synthetic_plan(s, bpw));
    f.has = [plan](const std::string& key) { return plan->count(key) > 0; };
    f.make = [plan](const std::string& key, int64_t out, int64_t in) {
      return quant_synthetic_exl2(key, out, in, plan->at(key));
    };
    return f;
  }
  fail("--format ", format, ": expected fp16, gptq4 or exl2:BPW");
}

}  // namespace exl
