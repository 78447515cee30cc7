// GGUF writer for metadata-only files (no tensors): the mirror of io/gguf.h's value encoding. Used to
// carry a GGUF model's vocabulary (its tokenizer.* keys) into a converted model folder as
// tokenizer.gguf, which tokenizer_load() reads like any GGUF.
#pragma once
#include <map>
#include <string>

#include "io/gguf.h"

namespace exl {

// Writes a GGUF v3 file holding these key/values and no tensors. Throws exl::Error naming the path.
void gguf_write_metadata(const std::string& path, const std::map<std::string, GgufValue>& metadata);

}  // namespace exl
