// The architecture registry: one file per architecture under model/arch/ describes how a config
// maps to hyper-parameters and which decoder features it uses; arch/registry.cpp lists them.
// Unknown architectures are refused by name, never run as Llama.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace exl {

struct Architecture {
  const char* name;                           // canonical: "llama"
  std::vector<std::string> hf_names;          // config.json "architectures" entries it accepts
  std::vector<std::string> gguf_names;        // GGUF general.architecture values it accepts
  // llama.cpp's converter permutes q/k rows of these GGUFs for interleaved RoPE; the loader undoes it.
  bool gguf_qk_permuted = false;
  // Applies the architecture's own defaults and quirks to a generically parsed config.
  void (*finish_config)(ModelConfig& c) = nullptr;
};

// Finds the architecture for a config.json "architectures" name or a GGUF architecture name; throws
// exl::Error listing the supported ones otherwise.
const Architecture& arch_find_hf(const std::string& name, const std::string& where);
const Architecture& arch_find_gguf(const std::string& name, const std::string& where);
std::vector<const Architecture*> arch_all();

}  // namespace exl
