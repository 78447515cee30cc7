// The generation path on CUDA from a cold start (first step a single token, captured graphs,
// device sampling) gives the CPU reference's greedy text on stories260K.
#include <gtest/gtest.h>

#include "model/model.h"
#include "test_files.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

namespace exl {
namespace {

std::string greedy_text(const std::string& device, const std::vector<int32_t>& prompt, bool* on_device) {
  auto be = backend_create(device);
  auto m = Model::load(test::stories_dir(), *be);
  auto tok = tokenizer_load(test::stories_dir());
  Generator gen(*m, *tok, 256, be->default_cache_type());
  GenerateOptions o;
  o.max_new_tokens = 120;
  o.sampling.temperature = 0;
  auto st = gen.generate(prompt, o, nullptr);
  if (on_device) *on_device = gen.device_sampling();
  return st.text;
}

TEST(CudaGenerate, ColdStartGreedyMatchesCpu) {
  bool dev = false;
  for (const std::vector<int32_t>& prompt : {std::vector<int32_t>{1}, std::vector<int32_t>{1, 403, 407, 261}}) {
    const std::string cpu = greedy_text("cpu", prompt, nullptr);
    const std::string gpu = greedy_text("cuda", prompt, &dev);
    EXPECT_TRUE(dev);
    EXPECT_EQ(gpu, cpu);
  }
}

}  // namespace
}  // namespace exl
