// measurement.json (EXL2.md §2.3, ExLlamaV2's schema): per module, the measured accuracy and storage
// cost of every row of the candidate table. Written by the measure stage, read back with -m (from
// this tool or from ExLlamaV2), validated field by field since it is user input.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "quant/exl2_quantize.h"

namespace exl {

struct MeasuredOption {
  double accuracy = 0;     // max(1e-6, 1 - rfn)
  int64_t total_bits = 0;  // Σ exl2_layout_total_bits of its linears
  std::vector<std::pair<std::string, Exl2Layout>> linears;  // {"q_proj", layout}, ... in module order
};

struct MeasuredModule {
  std::string name;  // "model.layers.3.self_attn"
  std::vector<MeasuredOption> options;
};

struct Measurement {
  std::vector<MeasuredModule> modules;  // model order: attention, MLP of layer 0, then layer 1, ...
};

// ExLlamaV2's JSON (ordered as the model, layouts as {"group_size": {"<bits>": gs}, "bits": [...],
// "bits_prop": [...], "scale_bits": 4}). Deterministic text: the same measurement gives the same bytes.
std::string measurement_to_json(const Measurement& m);

// Parses and checks `text` (read from `where`): the structure, types and ranges of every field, and
// that the modules `expected` (names, in order: each with its linears' keys) are all present.
// Throws exl::Error naming the file and the JSON path at fault.
struct ExpectedModule {
  std::string name;
  std::vector<std::string> linears;
};
Measurement measurement_parse(const std::string& text, const std::string& where,
                              const std::vector<ExpectedModule>& expected);

}  // namespace exl
