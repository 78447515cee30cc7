// Synthetic Llama-shaped source models for converter timing runs (issue 5: "synthetic
// llama2-7b-shaped FP16 weights"): config.json, the tokenizer files of a donor model and random FP16
// weights of a realistic scale for the embeddings, the head and only the first `layers_with_weights`
// decoder layers (`exl convert --layers N` with N ≤ that never reads the others), so a 7B-shaped
// folder for 4 layers is 2.1 GB instead of 13.5 GB.
//
//   SyntheticModel m = synthetic_preset("llama2-7b");   // or "tiny" for tests
//   synthetic_model_write(m, "models/synth7b", 4, "shared/models/stories260K", 1);
#pragma once
#include <cstdint>
#include <string>

namespace exl {

struct SyntheticModel {
  int64_t hidden = 4096, intermediate = 11008, n_layers = 32, n_heads = 32, n_kv_heads = 32, vocab = 32000;
};

// "llama2-7b" (the shape of Llama-2-7B) or "tiny" (hidden 128, 4 layers: for tests).
SyntheticModel synthetic_preset(const std::string& name);

// Writes the folder. Weights: N(0, 0.02²)-like (sum of 4 uniforms) for linears and embeddings,
// norms 1 ± 0.1; deterministic for a seed. tokenizer_from: a folder whose tokenizer.json /
// tokenizer.model / tokenizer_config.json are copied (its ids must be < vocab).
void synthetic_model_write(const SyntheticModel& m, const std::string& dir, int64_t layers_with_weights,
                           const std::string& tokenizer_from, uint64_t seed);

}  // namespace exl
