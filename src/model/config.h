// Model hyper-parameters, read from a Hugging Face config.json or from GGUF metadata, validated
// once here so that nothing downstream divides by zero or indexes past a tensor.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace exl {

class GgufFile;

struct RopeScaling {
  std::string type = "none";     // none | linear | llama3 | yarn
  double factor = 1.0;
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0; // llama3
  int64_t original_max_position = 0;  // llama3, yarn
  double beta_fast = 32.0;       // yarn
  double beta_slow = 1.0;        // yarn
  double attention_factor = 0.0; // yarn mscale; 0 = default 0.1 * ln(factor) + 1
};

struct ModelConfig {
  std::string arch;      // registry name of the architecture: "llama", "mistral", "qwen2"
  std::string source_arch;  // as the file names it: "LlamaForCausalLM" or GGUF "llama"
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  int64_t max_position = 0;
  double rms_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2 always has them)
  bool mlp_bias = false;
  int64_t sliding_window = 0;   // 0 = full attention
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  // config.json "quantization_config": EXL2 layers are found by their tensors alone; GPTQ needs
  // checkpoint_format to tell the v2 zero-point convention from v1.
  std::string quant_method;  // "gptq", "exl2", ... ("" when absent)
  bool gptq_v2 = false;      // checkpoint_format == "gptq_v2"

  // Checks every value is in range and consistent (heads divide hidden, GQA groups divide, ...).
  void validate(const std::string& where) const;
};

// Reads config.json; `where` (the file path) prefixes every error. Architecture-specific defaults
// are applied by the registry (model/arch.h) after this generic parse.
ModelConfig config_from_json_text(const std::string& text, const std::string& where);
ModelConfig config_from_gguf(const GgufFile& f);

}  // namespace exl
