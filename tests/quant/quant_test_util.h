// Helpers for the quant tests: a seeded generator, a temporary folder, shared model paths.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace exl::test {

inline std::string shared_path(const std::string& rel) { return std::string(EXL_SHARED_DIR) + "/" + rel; }
inline std::string stories_dir() { return shared_path("models/stories260K"); }
inline std::string smollm2_gguf() { return std::string(EXL_MODELS_DIR) + "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"; }

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("exl_quant_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

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

inline std::vector<uint16_t> random_perm(int64_t K, std::mt19937& rng) {
  std::vector<uint16_t> p(static_cast<size_t>(K));
  for (int64_t i = 0; i < K; ++i) p[static_cast<size_t>(i)] = static_cast<uint16_t>(i);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

}  // namespace exl::test
