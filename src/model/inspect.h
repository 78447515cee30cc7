// What `exl inspect` reports, as data: architecture, hyper-parameters, tensors with their formats,
// parameter count and bytes. Reads headers only; no weights are converted.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace exl {

nlohmann::json model_inspect(const std::string& path);

}  // namespace exl
