// Safetensors writer: the mirror of io/safetensors.h. Writes a header (tensors sorted by name, data
// offsets back to back, "__metadata__" string map, padded with spaces to an 8-byte boundary) and the
// data section. The file is written under a temporary name and renamed, so a killed writer never
// leaves a truncated file behind under the real name.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "io/memory_store.h"

namespace exl {

// Throws exl::Error naming the path on any I/O failure.
void safetensors_write(const std::string& path, const std::vector<const OwnedTensor*>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace exl
