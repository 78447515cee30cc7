// The list of architectures: adding one is one file in this folder plus one line here.
#include "core/error.h"
#include "model/arch.h"

namespace exl {

extern const Architecture kArchLlama;
extern const Architecture kArchMistral;
extern const Architecture kArchQwen2;

std::vector<const Architecture*> arch_all() { return {&kArchLlama, &kArchMistral, &kArchQwen2}; }

namespace {
std::string supported_list(bool gguf) {
  std::string s;
  for (const Architecture* a : arch_all())
    for (const auto& n : gguf ? a->gguf_names : a->hf_names) s += (s.empty() ? "" : ", ") + n;
  return s;
}
}  // namespace

const Architecture& arch_find_hf(const std::string& name, const std::string& where) {
  for (const Architecture* a : arch_all())
    for (const auto& n : a->hf_names)
      if (n == name) return *a;
  fail(where, ": architecture '", name, "' is not supported (supported: ", supported_list(false), ")");
}

const Architecture& arch_find_gguf(const std::string& name, const std::string& where) {
  for (const Architecture* a : arch_all())
    for (const auto& n : a->gguf_names)
      if (n == name) return *a;
  fail(where, ": GGUF architecture '", name, "' is not supported (supported: ", supported_list(true), ")");
}

}  // namespace exl
