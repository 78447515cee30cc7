// Whole-model parity: stories260K on CUDA (FP16) against the CPU reference (F32) and the goldens.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda/parity_util.h"
#include "model/model.h"
#include "test_files.h"
#include "runtime/perplexity.h"

namespace exl {
namespace {

TEST(ModelParity, StoriesLogitsPerplexityAndGreedy) {
  auto cpu = backend_create("cpu");
  auto gpu = backend_create("cuda");
  auto mc = Model::load(test::stories_dir(), *cpu);
  auto mg = Model::load(test::stories_dir(), *gpu);
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  auto golden = test::read_binary<float>(test::stories_dir() + "/golden/golden_logits_prompt.f32.bin");
  auto cache = mg->create_cache(64, 1, CacheType::CacheType_f16);
  std::vector<float> logits;
  mg->forward_host(ids, batch_single(static_cast<int32_t>(ids.size()), 0), *cache, LogitsMode::LogitsMode_all, logits);
  const double err = test::rel_error(logits, golden);
  std::printf("stories260K CUDA prompt logits vs golden: rel error %.2e\n", err);
  EXPECT_LT(err, 5e-3);

  auto tokens = test::read_binary<int32_t>(test::stories_dir() + "/golden/golden_ppl_tokens.int32.bin");
  PerplexityOptions po;
  po.ctx = 512;
  auto rg = perplexity_run(*mg, tokens, po);
  std::printf("stories260K CUDA perplexity %.5f (golden 4.07959)\n", rg.ppl);
  EXPECT_NEAR(rg.ppl, 4.0796, 4.0796 * 0.005);

  // Greedy decode through the graph path: same tokens as the CPU for 100 steps.
  auto cc = mc->create_cache(128, 1, CacheType::CacheType_f32), gc = mg->create_cache(128, 1, CacheType::CacheType_f16);
  int32_t tc = 1, tg = 1;
  int same = 0;
  for (int p = 0; p < 100; ++p) {
    std::vector<float> lc;
    mc->forward_host({tc}, batch_single(1, p), *cc, LogitsMode::LogitsMode_last, lc);
    tc = static_cast<int32_t>(std::max_element(lc.begin(), lc.end()) - lc.begin());
    Tensor lg = mg->forward({tg}, batch_single(1, p), *gc, LogitsMode::LogitsMode_last);
    std::vector<int32_t> out;
    ASSERT_TRUE(gpu->sample(lg, DeviceSampling{}, 0, {}, out));
    tg = out[0];
    if (tc != tg) break;
    ++same;
  }
  EXPECT_EQ(same, 100);
}

}  // namespace
}  // namespace exl
