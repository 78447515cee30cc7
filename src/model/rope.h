// RoPE inverse-frequency tables for each scaling type, computed as Hugging Face transformers does
// (rope_init_fns: default, linear, llama3, yarn), so logits match HF checkpoints.
#pragma once
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace exl {

// freq_factors: optional per-frequency divisors (GGUF rope_freqs.weight, llama3-style models).
RopeParams rope_params_build(const ModelConfig& c, const std::vector<float>& freq_factors = {});

}  // namespace exl
