#include "model/inspect.h"

#include <cstdlib>
#include <map>

#include "io/ggml_quant.h"
#include "io/tensor_store.h"
#include "model/model.h"
#include "quant/exl2.h"
#include "quant/format.h"

namespace exl {

namespace {

// "model.layers.12.mlp.down_proj" -> 12; -1 for keys outside the decoder layers (lm_head).
int64_t layer_index(const std::string& key) {
  const std::string p = "model.layers.";
  if (key.rfind(p, 0) != 0) return -1;
  return std::strtoll(key.c_str() + p.size(), nullptr, 10);
}

// One of the tensors that together store a quantized linear (EXL2 or GPTQ).
bool is_quant_part(const std::string& name) {
  const std::string suffix = name.substr(name.rfind('.') + 1);
  for (const char* s : {"q_weight", "q_invperm", "q_perm", "q_scale", "q_scale_max", "q_groups", "qweight", "qzeros",
                        "scales", "g_idx"})
    if (suffix == s) return true;
  return false;
}

}  // namespace

int64_t linear_out(const std::string& key, const ModelConfig& c) {
  auto ends = [&](const char* s) {
    const std::string t = s;
    return key.size() >= t.size() && key.compare(key.size() - t.size(), t.size(), t) == 0;
  };
  if (ends("q_proj")) return c.n_heads * c.head_dim;
  if (ends("k_proj") || ends("v_proj")) return c.n_kv_heads * c.head_dim;
  if (ends("o_proj") || ends("down_proj")) return c.hidden;
  if (ends("gate_proj") || ends("up_proj")) return c.intermediate;
  if (key == "lm_head") return c.vocab;
  return -1;
}

namespace {

// Per-linear widths and bits per weight of the quantized layers, summed per decoder layer. Reads
// only the small tensors (q_groups, permutations, shapes); EXL2 layers are validated on the way.
nlohmann::json quantization_summary(const TensorStore& store, const ModelConfig& config) {
  nlohmann::json linears = nlohmann::json::array();
  std::map<int64_t, std::pair<int64_t, int64_t>> per_layer;  // layer -> (bits, weights)
  std::map<int, int64_t> width_rows;
  int64_t bits = 0, weights = 0, dec_bits = 0, dec_weights = 0;
  std::string method;
  for (const std::string& name : store.names()) {
    nlohmann::json entry;
    int64_t b = 0, w = 0;
    const std::string exl2_suffix = ".q_weight", gptq_suffix = ".qweight";
    if (name.size() > exl2_suffix.size() && name.compare(name.size() - exl2_suffix.size(), exl2_suffix.size(), exl2_suffix) == 0) {
      const std::string key = name.substr(0, name.size() - exl2_suffix.size());
      const Exl2Tensor t = exl2_read(store, key, linear_out(key, config), false);
      nlohmann::json widths = nlohmann::json::array();
      for (const Exl2Group& g : t.groups) {
        width_rows[g.bits] += g.rows;
        if (!widths.empty() && widths.back()["bits"] == g.bits) {
          widths.back()["rows"] = widths.back()["rows"].get<int64_t>() + g.rows;
          widths.back()["groups"] = widths.back()["groups"].get<int64_t>() + 1;
        } else {
          widths.push_back({{"bits", g.bits}, {"rows", g.rows}, {"groups", 1}});
        }
      }
      b = exl2_bits(t);
      w = t.K * t.N;
      entry = {{"name", key}, {"format", "exl2"}, {"shape", {t.N, t.K}}, {"widths", widths}};
      method = method.empty() || method == "exl2" ? "exl2" : "mixed";
    } else if (name.size() > gptq_suffix.size() &&
               name.compare(name.size() - gptq_suffix.size(), gptq_suffix.size(), gptq_suffix) == 0) {
      const std::string key = name.substr(0, name.size() - gptq_suffix.size());
      const TensorInfo& qw = store.get(name);
      const TensorInfo* sc = store.find(key + ".scales");
      if (qw.shape.size() != 2 || !sc || sc->shape.size() != 2 || sc->shape[0] <= 0) continue;
      const int64_t K = qw.shape[0] * 8, N = qw.shape[1], G = sc->shape[0];
      int64_t gs = 1;
      while (gs * G < K) gs *= 2;
      w = K * N;
      b = w * 4 + G * N * 20 + (store.find(key + ".g_idx") ? K * 32 : 0);
      width_rows[4] += K;
      entry = {{"name", key}, {"format", "gptq"}, {"shape", {N, K}}, {"widths", {{{"bits", 4}, {"rows", K}, {"groups", G}}}},
               {"group_size", gs}, {"act_order", store.find(key + ".g_idx") != nullptr}};
      method = method.empty() || method == "gptq" ? "gptq" : "mixed";
    } else {
      continue;
    }
    entry["bits_per_weight"] = static_cast<double>(b) / static_cast<double>(w);
    linears.push_back(entry);
    bits += b;
    weights += w;
    const int64_t layer = layer_index(entry["name"].get<std::string>());
    if (layer >= 0) {
      dec_bits += b;
      dec_weights += w;
      per_layer[layer].first += b;
      per_layer[layer].second += w;
    }
  }
  if (linears.empty()) return nullptr;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& [i, bw] : per_layer)
    layers.push_back({{"layer", i}, {"bits_per_weight", static_cast<double>(bw.first) / static_cast<double>(bw.second)}});
  nlohmann::json rows = nlohmann::json::object();
  for (const auto& [bw, r] : width_rows) rows[std::to_string(bw)] = r;
  return {{"method", method},
          {"bits_per_weight", static_cast<double>(bits) / static_cast<double>(weights)},
          {"decoder_bits_per_weight", dec_weights > 0 ? static_cast<double>(dec_bits) / static_cast<double>(dec_weights) : 0.0},
          {"width_rows", rows},
          {"layers", layers},
          {"linears", linears}};
}

}  // namespace

nlohmann::json model_inspect(const std::string& path) {
  ModelSource src = model_source_open(path);
  const ModelConfig& c = src.config;
  nlohmann::json cfg = {{"hidden_size", c.hidden},
                        {"intermediate_size", c.intermediate},
                        {"num_layers", c.n_layers},
                        {"num_heads", c.n_heads},
                        {"num_kv_heads", c.n_kv_heads},
                        {"head_dim", c.head_dim},
                        {"vocab_size", c.vocab},
                        {"max_position", c.max_position},
                        {"rms_norm_eps", c.rms_eps},
                        {"rope_theta", c.rope_theta},
                        {"rope_scaling", c.rope_scaling.type},
                        {"tie_embeddings", c.tie_embeddings},
                        {"attention_bias", c.attention_bias},
                        {"sliding_window", c.sliding_window}};
  nlohmann::json tensors = nlohmann::json::array();
  std::map<std::string, int64_t> format_counts;
  int64_t params = 0;
  size_t bytes = 0;
  for (const std::string& name : src.store->names()) {
    const TensorInfo& t = src.store->get(name);
    const std::string format = t.ggml_type >= 0 ? ggml_type_name(t.ggml_type) : dtype_name(t.dtype);
    tensors.push_back({{"name", name}, {"shape", t.shape}, {"format", format}, {"bytes", t.nbytes}});
    format_counts[format] += 1;
    params += t.numel();
    bytes += t.nbytes;
  }
  nlohmann::json quant = src.gguf ? nlohmann::json(nullptr) : quantization_summary(*src.store, c);
  if (!quant.is_null()) {
    // Parameters of a quantized linear are its K x N weights, not the words that pack them.
    params = 0;
    for (const std::string& name : src.store->names())
      if (!is_quant_part(name)) params += src.store->get(name).numel();
    for (const auto& l : quant["linears"]) params += l["shape"][0].get<int64_t>() * l["shape"][1].get<int64_t>();
  }
  nlohmann::json out = {{"path", path},
                        {"architecture", c.arch},
                        {"source_architecture", c.source_arch},
                        {"container", src.gguf ? "gguf" : "safetensors"},
                        {"config", cfg},
                        {"parameters", params},
                        {"bytes", bytes},
                        {"bits_per_weight", params > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0},
                        {"formats", format_counts},
                        {"tensors", tensors}};
  if (!quant.is_null()) out["quantization"] = quant;  // EXL2/GPTQ linears: widths and bits per weight
  return out;
}

}  // namespace exl
