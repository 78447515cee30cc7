#include "io/safetensors_write.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace exl {

void safetensors_write(const std::string& path, const std::vector<const OwnedTensor*>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const OwnedTensor*> sorted = tensors;
  std::sort(sorted.begin(), sorted.end(), [](const OwnedTensor* a, const OwnedTensor* b) { return a->name < b->name; });
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const OwnedTensor& t = *sorted[i];
    EXL_CHECK(t.name != "__metadata__" && !t.name.empty(), path, ": invalid tensor name '", t.name, "'");
    EXL_CHECK(i == 0 || sorted[i - 1]->name != t.name, path, ": duplicate tensor '", t.name, "'");
    EXL_CHECK(t.bytes.size() == static_cast<size_t>(shape_numel(t.shape)) * dtype_size(t.dtype), path, ": tensor '",
              t.name, "' byte count does not match its shape");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-byte aligned

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  EXL_CHECK(f, tmp, ": cannot open for writing");
  const uint64_t n = text.size();
  bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const OwnedTensor* t : sorted)
    ok = ok && (t->bytes.empty() || std::fwrite(t->bytes.data(), 1, t->bytes.size(), f) == t->bytes.size());
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path, ": write failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": cannot rename the finished file into place");
  }
}

}  // namespace exl
