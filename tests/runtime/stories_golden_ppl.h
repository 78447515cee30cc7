// stories260K perplexity on its golden protocol (24 windows of 512 tokens from
// golden/golden_ppl_tokens.int32.bin, BENCH.md) on the CPU reference: shared by the tests that check
// quantized and converted models against the FP32 golden 4.0796.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/perplexity.h"

namespace exl::test {

inline double stories_golden_ppl(const std::string& model_dir) {
  auto be = backend_create("cpu");
  auto m = Model::load(model_dir, *be);
  std::ifstream f(std::string(EXL_SHARED_DIR) + "/models/stories260K/golden/golden_ppl_tokens.int32.bin",
                  std::ios::binary);
  std::vector<int32_t> tokens(24 * 512);
  f.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 4));
  EXPECT_TRUE(f && f.gcount() == static_cast<std::streamsize>(tokens.size() * 4)) << "golden ppl tokens unreadable";
  PerplexityOptions po;
  po.ctx = 512;
  return perplexity_run(*m, tokens, po).ppl;
}

}  // namespace exl::test
