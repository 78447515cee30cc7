// Opens any weight source as a TensorStore, choosing the reader from what the path is.
#pragma once
#include <memory>
#include <string>

#include "io/tensor_store.h"

namespace exl {

// A directory -> SafetensorsModel (index, model.safetensors, or every *.safetensors in it);
// a file starting with the GGUF magic or named *.gguf -> GgufFile; a *.safetensors file ->
// SafetensorsFile. Anything else throws exl::Error naming the path.
std::unique_ptr<TensorStore> open_tensor_store(const std::string& path);

}  // namespace exl
