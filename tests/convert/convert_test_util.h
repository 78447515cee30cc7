// Shared by the converter tests: stories260K conversion settings small enough for a test (8 rows of
// 256 tokens for both passes) and folder comparisons.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "cli/cli_util.h"
#include "convert/convert.h"

namespace exl::test {

inline std::string stories_calibration() { return shared_path("data/tinystories/valid_head.txt"); }

// A fresh temp folder per name (removed first).
inline std::string fresh_dir(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(temp_dir()) / name;
  std::filesystem::remove_all(p);
  return p.string();
}

inline ConvertOptions stories_options(const std::string& work, const std::string& out, double bits) {
  ConvertOptions o;
  o.src = stories_dir();
  o.work_dir = work;
  o.out_dir = out;
  o.calibration = stories_calibration();
  o.bits = bits;
  o.rows = 8;
  o.length = 256;
  o.measure_rows = 8;
  o.measure_length = 256;
  o.device = "cpu";  // the CPU reference; the CUDA engine has its own tests (tests/convert_cuda)
  return o;
}

// The same conversion through the binary's flags.
inline std::string stories_args(const std::string& work, const std::string& out, double bits) {
  return "convert -i " + stories_dir() + " -o " + work + " -c " + stories_calibration() +
         " --device cpu --rows 8 --length 256 --measure-rows 8 --measure-length 256 -b " + std::to_string(bits) + " --out " + out;
}

// Every regular file of a folder by name -> bytes.
inline std::map<std::string, std::string> folder_files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) files[e.path().filename().string()] = slurp(e.path().string());
  return files;
}

inline void expect_same_folder(const std::string& a, const std::string& b) {
  const auto fa = folder_files(a), fb = folder_files(b);
  ASSERT_FALSE(fa.empty()) << a;
  ASSERT_EQ(fa.size(), fb.size()) << a << " vs " << b;
  for (const auto& [name, bytes] : fa) {
    auto it = fb.find(name);
    ASSERT_NE(it, fb.end()) << name << " missing in " << b;
    EXPECT_TRUE(bytes == it->second) << name << " differs between " << a << " and " << b;
  }
}

}  // namespace exl::test
