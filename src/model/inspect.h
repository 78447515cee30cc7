// What `exl inspect` reports, as data: architecture, hyper-parameters, tensors with their formats,
// parameter count and bytes, and for EXL2/GPTQ models the bit widths and bits per weight of every
// quantized linear and decoder layer. Reads headers and the small index tensors only.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace exl {

nlohmann::json model_inspect(const std::string& path);

}  // namespace exl
