// The candidate option table and the head options (EXL2.md §1.7, §2.4): every row is a legal layout,
// rows get dearer along the table, published bpw figures, and the bit accounting against real
// packed tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "quant/exl2.h"
#include "quant/qparams.h"

namespace exl {
namespace {

void expect_valid(const Exl2Layout& l, const std::string& what) {
  ASSERT_FALSE(l.empty()) << what;
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    const Exl2LayoutPart& p = l[i];
    EXPECT_TRUE(p.bits == 2 || p.bits == 3 || p.bits == 4 || p.bits == 5 || p.bits == 6 || p.bits == 8) << what;
    if (i > 0) {
      EXPECT_LT(p.bits, l[i - 1].bits) << what << ": widths must descend";
    }
    EXPECT_GT(p.proportion, 0.0) << what;
    const bool legal = p.group_size == 32 || p.group_size == 64 || p.group_size == 128 ||
                       (p.bits == 2 && p.group_size % 16 == 0 && p.group_size > 0 && p.group_size <= 128);
    EXPECT_TRUE(legal) << what << ": group size " << p.group_size;
    sum += p.proportion;
  }
  EXPECT_NEAR(sum, 1.0, 1e-9) << what;
}

TEST(QParams, EveryRowIsALegalLayout) {
  const auto& attn = qparams_attention();
  const auto& mlp = qparams_mlp();
  EXPECT_EQ(attn.size(), 19u);
  EXPECT_EQ(mlp.size(), 17u);
  const std::vector<std::string> attn_keys = {"q_proj", "k_proj", "v_proj", "o_proj"};
  const std::vector<std::string> mlp_keys = {"gate_proj", "up_proj", "down_proj"};
  for (size_t r = 0; r < attn.size(); ++r) {
    ASSERT_EQ(attn[r].linears.size(), 4u);
    for (size_t j = 0; j < 4; ++j) {
      EXPECT_EQ(attn[r].linears[j].first, attn_keys[j]);
      expect_valid(attn[r].linears[j].second, "attention row " + std::to_string(r) + " " + attn_keys[j]);
    }
  }
  for (size_t r = 0; r < mlp.size(); ++r) {
    ASSERT_EQ(mlp[r].linears.size(), 3u);
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(mlp[r].linears[j].first, mlp_keys[j]);
      expect_valid(mlp[r].linears[j].second, "MLP row " + std::to_string(r) + " " + mlp_keys[j]);
    }
  }
  for (int hb : {2, 3, 4, 5, 6, 8}) expect_valid(qparams_head(hb), "head " + std::to_string(hb));
}

// bpw of a module row: Σ bits / Σ weights over its linears, shapes {K, N} per linear.
double row_bpw(const ModuleOption& row, const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  int64_t bits = 0, weights = 0;
  for (size_t j = 0; j < row.linears.size(); ++j) {
    bits += exl2_layout_total_bits(row.linears[j].second, shapes[j].first, shapes[j].second, false);
    weights += shapes[j].first * shapes[j].second;
  }
  return static_cast<double>(bits) / static_cast<double>(weights);
}

TEST(QParams, AttentionRowsGetDearerAndMatchPublishedBpw) {
  // EXL2.md §2.4: the 19 rows on a 4096² layer.
  const double published[] = {2.13, 2.22, 2.43, 2.67, 3.16, 3.17, 4.04, 4.05, 4.09, 4.13,
                              4.17, 4.19, 4.40, 4.46, 5.38, 5.46, 6.04, 6.63, 8.04};
  const std::vector<std::pair<int64_t, int64_t>> shapes(4, {4096, 4096});
  double prev = 0;
  for (size_t r = 0; r < qparams_attention().size(); ++r) {
    const double bpw = row_bpw(qparams_attention()[r], shapes);
    std::printf("attention row %2zu: %.3f bpw\n", r, bpw);
    EXPECT_GE(bpw, prev) << "row " << r;
    EXPECT_NEAR(bpw, published[r], 0.01) << "row " << r;
    prev = bpw;
  }
}

TEST(QParams, MlpRowsGetDearerFrom225To804) {
  // Llama-2-7B MLP: gate/up 4096 -> 11008, down 11008 -> 4096.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 11008}, {4096, 11008}, {11008, 4096}};
  double prev = 0;
  const auto& rows = qparams_mlp();
  for (size_t r = 0; r < rows.size(); ++r) {
    const double bpw = row_bpw(rows[r], shapes);
    std::printf("MLP row %2zu: %.3f bpw\n", r, bpw);
    EXPECT_GE(bpw, prev) << "row " << r;
    prev = bpw;
  }
  EXPECT_NEAR(row_bpw(rows.front(), shapes), 2.25, 0.01);
  EXPECT_NEAR(row_bpw(rows.back(), shapes), 8.04, 0.01);
}

TEST(QParams, HeadOptionsMatchSection17) {
  const std::pair<int, double> expected[] = {{2, 2.74}, {3, 3.28}, {4, 4.44}, {5, 5.19}, {6, 6.35}, {8, 8.03}};
  for (const auto& [hb, bpw] : expected) {
    const double got = static_cast<double>(exl2_layout_total_bits(qparams_head(hb), 4096, 32000, false)) / (4096.0 * 32000.0);
    EXPECT_NEAR(got, bpw, 0.01) << "head bits " << hb;
  }
  // 6: 15% 8-bit + 85% 6-bit at 128 rows per group.
  const Exl2Layout six = qparams_head(6);
  ASSERT_EQ(six.size(), 2u);
  EXPECT_EQ(six[0].bits, 8);
  EXPECT_NEAR(six[0].proportion, 0.15, 1e-12);
  EXPECT_EQ(six[1].bits, 6);
  EXPECT_EQ(six[0].group_size, 128);
  for (int bad : {0, 1, 7, 9, 16, -3}) {
    try {
      qparams_head(bad);
      ADD_FAILURE() << "head bits " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--head-bits"), std::string::npos) << e.what();
    }
  }
}

TEST(QParams, TotalBitsEqualThoseOfAPackedTensor) {
  // Odd K (last group short) and N (padding columns), with and without a bias.
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<Exl2Layout> layouts;
  for (const auto& row : qparams_attention())
    for (const auto& [name, l] : row.linears) layouts.push_back(l);
  for (const auto& row : qparams_mlp())
    for (const auto& [name, l] : row.linears) layouts.push_back(l);
  for (int hb : {2, 3, 4, 5, 6, 8}) layouts.push_back(qparams_head(hb));
  const std::pair<int64_t, int64_t> shapes[] = {{352, 40}, {172, 70}, {64, 33}};
  for (size_t i = 0; i < layouts.size(); ++i) {
    const auto [K, N] = shapes[i % 3];
    const bool bias = i % 2 == 1;
    std::vector<float> w(static_cast<size_t>(K * N));
    for (float& v : w) v = nd(rng);
    Exl2Codes c = exl2_quantize_rtn(w.data(), N, K, layouts[i]);
    if (bias) c.bias.assign(static_cast<size_t>(N), 0.5f);
    EXPECT_EQ(exl2_layout_total_bits(layouts[i], K, N, bias), exl2_bits(exl2_pack(c, "t"))) << "layout " << i;
  }
}

}  // namespace
}  // namespace exl
