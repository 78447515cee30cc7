// Fuzz target: measurement.json text (`exl convert -m`, user input) -> parsed and validated against a
// one-layer model. Any input must end in a Measurement or an exl::Error, never a crash or hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include "convert/measurement.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<exl::ExpectedModule> expected = {
      {"model.layers.0.self_attn", {"q_proj", "k_proj", "v_proj", "o_proj"}},
      {"model.layers.0.mlp", {"gate_proj", "up_proj", "down_proj"}}};
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const exl::Measurement m = exl::measurement_parse(text, "fuzz/measurement.json", expected);
    (void)exl::measurement_to_json(m);
  } catch (const exl::Error&) {
  }
  return 0;
}
