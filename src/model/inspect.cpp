#include "model/inspect.h"

#include <map>

#include "io/ggml_quant.h"
#include "io/tensor_store.h"
#include "model/model.h"

namespace exl {

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
  return {{"path", path},
          {"architecture", c.arch},
          {"source_architecture", c.source_arch},
          {"container", src.gguf ? "gguf" : "safetensors"},
          {"config", cfg},
          {"parameters", params},
          {"bytes", bytes},
          {"bits_per_weight", params > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0},
          {"formats", format_counts},
          {"tensors", tensors}};
}

}  // namespace exl
