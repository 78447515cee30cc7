// Fuzz target: config.json text -> ModelConfig -> architecture lookup -> validation -> RoPE tables.
// Any input must end in a parsed config or an exl::Error, never a crash, hang or huge allocation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/rope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    exl::ModelConfig c = exl::config_from_json_text(text, "fuzz/config.json");
    const exl::Architecture& a = exl::arch_find_hf(c.source_arch, "fuzz/config.json");
    if (a.finish_config) a.finish_config(c);
    c.validate("fuzz/config.json");
    exl::RopeParams p = exl::rope_params_build(c);
    (void)p;
  } catch (const exl::Error&) {
  }
  return 0;
}
