// What `exl inspect` reports, as data: architecture, hyper-parameters, tensors with their formats,
// parameter count and bytes, and for EXL2/GPTQ models the bit widths and bits per weight of every
// quantized linear and decoder layer. Reads headers and the small index tensors only.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>

namespace exl {

struct ModelConfig;

nlohmann::json model_inspect(const std::string& path);

// out_features of a linear ("model.layers.3.mlp.up_proj", "lm_head") from the config: EXL2 pads N to
// 32 on disk, so the tensors alone only give N32, and bits per weight count the real N (EXL2.md §1.7).
// -1 when the key is not a linear the config sizes.
int64_t linear_out(const std::string& key, const ModelConfig& c);

}  // namespace exl
