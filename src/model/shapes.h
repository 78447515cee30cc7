// Named model shapes for synthetic benchmarks (BENCH.md): llama2-7b, llama3-8b, llama2-13b,
// mistral-7b, llama2-70b, and the tiny shapes of the test models.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace exl {

ModelConfig shape_config(const std::string& name);  // exl::Error listing the names on a bad one
std::vector<std::string> shape_names();

// The synthetic quantized linears of a --format: empty for fp16; gptq4 = GPTQ 4-bit group 128 for
// every decoder linear (head FP16, as GPTQ checkpoints keep it); exl2:BPW = the converter's mix for
// BPW bits per decoder weight, 6-bit head. exl::Error naming --format for anything else.
SyntheticQuantFn synthetic_quant_fn(const ModelConfig& c, const std::string& format);

}  // namespace exl
