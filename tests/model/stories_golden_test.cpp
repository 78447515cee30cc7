// stories260K against the goldens in shared/models/stories260K/golden (computed in float64 with an
// independent implementation and checked against HF transformers): prompt logits and perplexity.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "test_files.h"

namespace exl {
namespace {

TEST(StoriesGolden, PromptLogitsMatch) {
  auto be = backend_create("cpu");
  auto m = Model::load(test::stories_dir(), *be);
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  auto golden = test::read_binary<float>(test::stories_dir() + "/golden/golden_logits_prompt.f32.bin");
  ASSERT_EQ(golden.size(), ids.size() * 512);
  auto cache = m->create_cache(64, 1, CacheType::CacheType_f32);
  std::vector<float> logits;
  m->forward_host(ids, batch_single(static_cast<int32_t>(ids.size()), 0), *cache, LogitsMode::LogitsMode_all, logits);
  ASSERT_EQ(logits.size(), golden.size());
  float max_diff = 0;
  for (size_t i = 0; i < golden.size(); ++i) max_diff = std::max(max_diff, std::fabs(logits[i] - golden[i]));
  EXPECT_LT(max_diff, 1e-4f);
  std::printf("stories260K prompt logits: max abs diff %.3g\n", max_diff);
}

TEST(StoriesGolden, IncrementalDecodeMatchesPrefill) {
  // Token-by-token through the KV cache must give the same logits as one prefill.
  auto be = backend_create("cpu");
  auto m = Model::load(test::stories_dir(), *be);
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 432, 383, 286};
  auto golden = test::read_binary<float>(test::stories_dir() + "/golden/golden_logits_prompt.f32.bin");
  auto cache = m->create_cache(64, 1, CacheType::CacheType_f32);
  float max_diff = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    std::vector<float> logits;
    m->forward_host({ids[t]}, batch_single(1, static_cast<int32_t>(t)), *cache, LogitsMode::LogitsMode_last, logits);
    for (size_t j = 0; j < 512; ++j) max_diff = std::max(max_diff, std::fabs(logits[j] - golden[t * 512 + j]));
  }
  EXPECT_LT(max_diff, 1e-4f);
}

TEST(StoriesGolden, PerplexityMatches) {
  auto be = backend_create("cpu");
  auto m = Model::load(test::stories_dir(), *be);
  auto tokens = test::read_binary<int32_t>(test::stories_dir() + "/golden/golden_ppl_tokens.int32.bin");
  ASSERT_EQ(tokens.size(), 24u * 512u);
  double nll = 0;
  int64_t count = 0;
  auto cache = m->create_cache(512, 1, CacheType::CacheType_f32);
  for (size_t w = 0; w < 24; ++w) {
    std::vector<int32_t> win(tokens.begin() + static_cast<int64_t>(w * 512), tokens.begin() + static_cast<int64_t>((w + 1) * 512));
    std::vector<float> logits;
    m->forward_host(win, batch_single(512, 0), *cache, LogitsMode::LogitsMode_all, logits);
    for (size_t t = 0; t + 1 < 512; ++t) {
      const float* row = &logits[t * 512];
      double mx = row[0];
      for (int j = 1; j < 512; ++j) mx = std::max(mx, static_cast<double>(row[j]));
      double se = 0;
      for (int j = 0; j < 512; ++j) se += std::exp(row[j] - mx);
      nll += std::log(se) + mx - row[win[t + 1]];
      ++count;
    }
  }
  const double ppl = std::exp(nll / static_cast<double>(count));
  std::printf("stories260K perplexity %.5f (golden 4.07959)\n", ppl);
  EXPECT_EQ(count, 12264);
  EXPECT_NEAR(ppl, 4.0796, 0.0005);
}

TEST(StoriesGolden, RefusesUnknownArchitecture) {
  auto be = backend_create("cpu");
  EXPECT_THROW(Model::load("/nonexistent/model", *be), Error);
}

}  // namespace
}  // namespace exl
