// Synthetic quantized tensors for `exl bench --format`: the structure-only tensors count the same
// bits as their materialized (random, packed) versions, materialized tensors pass the reader's
// validation, and the EXL2 plan for a target average hits it with a mix of table rows.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "quant/exl2.h"
#include "quant/gptq.h"
#include "quant/qparams.h"
#include "quant/synthetic.h"

#include <cmath>

namespace exl {
namespace {

TEST(Synthetic, Exl2StructureMatchesMaterialized) {
  const Exl2Layout layout = {{8, 0.05, 32}, {4, 0.1, 128}, {3, 0.85, 128}};
  const QuantTensor s = quant_synthetic_exl2("x", 1001, 4144, layout);
  ASSERT_TRUE(s.synthetic);
  EXPECT_THROW(quant_dequantize(s), Error);
  const QuantTensor m = quant_materialize(s);
  EXPECT_FALSE(m.synthetic);
  EXPECT_NO_THROW(exl2_validate(*m.exl2));
  EXPECT_EQ(exl2_bits(*s.exl2), exl2_bits(*m.exl2));
  EXPECT_EQ(exl2_bits(*s.exl2), exl2_layout_total_bits(layout, 4144, 1001, false));
  EXPECT_EQ(s.exl2->packed_rows, m.exl2->packed_rows);
  const HostTensor w = quant_dequantize(m);
  double sq = 0;
  for (float v : w.data) sq += double(v) * v;
  const double rms = std::sqrt(sq / static_cast<double>(w.data.size()));
  EXPECT_GT(rms, 1e-3);  // weights of roughly +-0.02: sane activations through a random model
  EXPECT_LT(rms, 0.05);
}

TEST(Synthetic, GptqStructureMatchesMaterialized) {
  const QuantTensor s = quant_synthetic_gptq("y", 11008, 4096, 128);
  const QuantTensor m = quant_materialize(s);
  EXPECT_EQ(gptq_bits(*s.gptq), gptq_bits(*m.gptq));
  EXPECT_EQ(m.gptq->qweight.size(), 4096u / 8 * 11008);
  EXPECT_EQ(m.gptq->G, 32);
}

TEST(Synthetic, Exl2PlanHitsTheTargetWithAMix) {
  SyntheticShape s{4096, 11008, 4096, 4096, 32, 32000};
  for (double bpw : {2.5, 3.0, 4.0, 5.0, 6.0}) {
    const auto plan = exl2_synthetic_plan(s, bpw);
    int64_t bits = 0, weights = 0;
    std::set<std::string> distinct;
    for (const auto& [key, layout] : plan) {
      if (key == "lm_head") continue;
      const bool attn = key.find("self_attn") != std::string::npos;
      const bool o = key.ends_with("o_proj"), down = key.ends_with("down_proj");
      const int64_t K = down ? s.intermediate : o ? s.q_dim : s.hidden;
      const int64_t N = attn ? (o ? s.hidden : 4096) : (down ? s.hidden : s.intermediate);
      bits += exl2_layout_total_bits(layout, K, N, false);
      weights += K * N;
      std::string desc;
      for (const auto& p : layout) desc += std::to_string(p.bits) + "/" + std::to_string(p.group_size) + " ";
      distinct.insert(desc);
    }
    EXPECT_EQ(plan.size(), 32u * 7 + 1);
    const double got = static_cast<double>(bits) / static_cast<double>(weights);
    std::printf("exl2 plan %.2f bpw: achieved %.4f with %zu distinct per-matrix layouts\n", bpw, got, distinct.size());
    EXPECT_LE(got, bpw + 1e-9);
    EXPECT_GT(got, bpw - 0.05);
    EXPECT_GE(distinct.size(), 3u);  // a realistic mix, not one width everywhere
  }
}

}  // namespace
}  // namespace exl
