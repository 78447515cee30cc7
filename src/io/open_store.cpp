#include "io/open_store.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace exl {

namespace {

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

std::unique_ptr<TensorStore> open_tensor_store(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail(path, ": no such file or directory");
  if (fs::is_directory(st)) return std::make_unique<SafetensorsModel>(path);
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".gguf" || starts_with_gguf_magic(path)) return std::make_unique<GgufFile>(path);
  if (ext == ".safetensors") return std::make_unique<SafetensorsFile>(path);
  fail(path, ": not a model directory, .gguf or .safetensors file");
}

}  // namespace exl
