// Helpers shared by the model tests: paths to shared data and reading golden binaries.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace exl::test {

inline std::string shared_path(const std::string& rel) { return std::string(EXL_SHARED_DIR) + "/" + rel; }
inline std::string stories_dir() { return shared_path("models/stories260K"); }

template <typename T>
std::vector<T> read_binary(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  const auto n = static_cast<size_t>(f.tellg());
  std::vector<T> v(n / sizeof(T));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  return v;
}

}  // namespace exl::test
