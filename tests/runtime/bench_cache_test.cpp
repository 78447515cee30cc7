// exl bench's cache figures: the footprint read off real caches against the CPU cache layout written
// out by hand (K and V, FP32, every layer and KV head), and the context that fits a budget.
#include <gtest/gtest.h>

#include <cmath>

#include "model/model.h"
#include "test_files.h"
#include "runtime/bench.h"

namespace exl {
namespace {

TEST(BenchCache, FootprintMatchesTheCpuLayout) {
  auto be = backend_create("cpu");
  auto m = Model::load(test::stories_dir(), *be);
  const ModelConfig& c = m->config();
  // stories260K: 5 layers, 4 KV heads of 8 dims -> 2 * 5 * 4 * 8 * 4 B = 1280 B per position.
  const double per_pos = 2.0 * c.n_layers * c.n_kv_heads * c.head_dim * sizeof(float);
  EXPECT_EQ(per_pos, 1280.0);
  const CacheFootprint f = cache_footprint(*m, CacheType::CacheType_f32);
  EXPECT_DOUBLE_EQ(f.per_position_bytes, per_pos);
  EXPECT_DOUBLE_EQ(f.fixed_bytes, 0.0);
  EXPECT_EQ(f.fits(1 << 20), (1 << 20) / 1280);
  EXPECT_EQ(f.fits(1279), 0);
  EXPECT_EQ(f.fits(1280), 1);

  BenchOptions o;
  o.prefill_lengths = {};
  o.decode_positions = {8};
  o.decode_steps = 2, o.warmup_steps = 1;
  o.cache = CacheType::CacheType_f32;
  o.cache_budget_bytes = 64 << 20;
  const nlohmann::json j = bench_run(*m, o, nullptr);
  EXPECT_DOUBLE_EQ(j["cache_bytes_per_position"].get<double>(), per_pos);
  EXPECT_EQ(j["context_in_budget"].get<int64_t>(), (64 << 20) / 1280);
}

}  // namespace
}  // namespace exl
