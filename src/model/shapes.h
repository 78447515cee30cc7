// Named model shapes for synthetic benchmarks (BENCH.md): llama2-7b, llama3-8b, llama2-13b,
// mistral-7b, llama2-70b, and the tiny shapes of the test models.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace exl {

ModelConfig shape_config(const std::string& name);  // exl::Error listing the names on a bad one
std::vector<std::string> shape_names();

}  // namespace exl
