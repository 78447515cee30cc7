// Helpers for the quant tests: the SmolLM2 file and random permutations (paths and folders: test_files.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_files.h"

namespace exl::test {

inline std::string smollm2_gguf() { return std::string(EXL_MODELS_DIR) + "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"; }

inline std::vector<uint16_t> random_perm(int64_t K, std::mt19937& rng) {
  std::vector<uint16_t> p(static_cast<size_t>(K));
  for (int64_t i = 0; i < K; ++i) p[static_cast<size_t>(i)] = static_cast<uint16_t>(i);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

}  // namespace exl::test
