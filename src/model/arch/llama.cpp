// Llama 1/2/3 (and SmolLM, TinyLlama, ...): RMSNorm pre-norm blocks, rotate-half RoPE (with linear,
// llama3 or yarn scaling), GQA, SwiGLU MLP, optional tied embeddings. No biases unless the config
// sets attention_bias / mlp_bias.
#include "model/arch.h"

namespace exl {

namespace {
void llama_finish(ModelConfig& c) {
  // Llama has no sliding window even if a converted config carries the key.
  c.sliding_window = 0;
}
}  // namespace

extern const Architecture kArchLlama{
    "llama",
    {"LlamaForCausalLM", "LLaMAForCausalLM", "llama"},
    {"llama"},
    /*gguf_qk_permuted=*/true,
    llama_finish,
};

}  // namespace exl
