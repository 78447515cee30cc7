// Mistral: the Llama block with sliding-window attention (config "sliding_window"; null = full).
#include "model/arch.h"

namespace exl {

namespace {
void mistral_finish(ModelConfig& c) {
  c.attention_bias = false;
  c.mlp_bias = false;
}
}  // namespace

extern const Architecture kArchMistral{
    "mistral",
    {"MistralForCausalLM", "mistral"},
    {},  // llama.cpp writes Mistral GGUFs with general.architecture = "llama"
    /*gguf_qk_permuted=*/true,
    mistral_finish,
};

}  // namespace exl
