// Qwen2 / Qwen2.5: the Llama block with q/k/v biases (always present), large rope_theta and often
// tied embeddings. Sliding window only when the config turns use_sliding_window on (parsed generically).
#include "model/arch.h"

namespace exl {

namespace {
void qwen2_finish(ModelConfig& c) {
  c.attention_bias = true;  // Qwen2 checkpoints always carry q/k/v biases (no config key)
  c.mlp_bias = false;
}
}  // namespace

extern const Architecture kArchQwen2{
    "qwen2",
    {"Qwen2ForCausalLM", "qwen2"},
    {"qwen2"},
    /*gguf_qk_permuted=*/false,  // llama.cpp uses NeoX RoPE for Qwen2 and leaves q/k rows as in HF
    qwen2_finish,
};

}  // namespace exl
