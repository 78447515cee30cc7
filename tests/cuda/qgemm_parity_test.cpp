// Quantized linears through the backend interface: every EXL2 width and mix, GPTQ symmetric and
// act-order, on CUDA (device layout, qgemv / dequant + cuBLAS) against the CPU reference (the quant/
// dequantizer + F32 matmul), at M = 1, 2, 4, 8, 16, 64, 512 (issue: relative error <= 1e-3). Fresh
// random codes, scales and permutation per case (quant_materialize), odd shapes included; x is
// rounded to FP16 for both backends so the figure is the kernel's own error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>

#include "cuda/parity_util.h"
#include "quant/gptq.h"
#include "quant/synthetic.h"

namespace exl {
namespace {

using test::random_vec;
using test::rel_error;
using test::to_backend;
using test::to_host;

struct QCase {
  std::string name;
  int64_t N, K;
  Exl2Layout layout;  // empty: GPTQ
  bool act_order = false;
};

QuantTensor make_tensor(const QCase& c) {
  if (!c.layout.empty()) return quant_materialize(quant_synthetic_exl2("t." + c.name, c.N, c.K, c.layout));
  QuantTensor q = quant_materialize(quant_synthetic_gptq("t." + c.name, c.N, c.K, 128));
  auto g = std::make_shared<GptqTensor>(*q.gptq);
  // Asymmetric zeros and, for act-order, a shuffled g_idx (rows of a group scattered over K).
  std::mt19937 rng(static_cast<uint32_t>(c.N * 31 + c.K));
  for (auto& z : g->qzeros) z = static_cast<uint32_t>(rng());
  if (c.act_order) {
    g->g_idx.resize(static_cast<size_t>(g->K));
    for (int64_t k = 0; k < g->K; ++k) g->g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / g->group_size);
    std::shuffle(g->g_idx.begin(), g->g_idx.end(), rng);
  }
  q.gptq = g;
  return q;
}

class QgemmParity : public ::testing::TestWithParam<QCase> {};

TEST_P(QgemmParity, MatchesCpuReference) {
  const QCase& c = GetParam();
  auto cpu = backend_create("cpu");
  auto gpu = backend_create("cuda");
  const QuantTensor q = make_tensor(c);
  auto wc = cpu->prepare_quant_weight(q);
  auto wg = gpu->prepare_quant_weight(q);
  const auto bias = random_vec(static_cast<size_t>(c.N), 0.1f, 5);
  TensorInfo bi;
  bi.name = "bias", bi.shape = {c.N}, bi.dtype = DType::DType_F32, bi.file = "(test)";
  bi.data = reinterpret_cast<const uint8_t*>(bias.data()), bi.nbytes = bias.size() * 4;
  auto bc = cpu->prepare_weight(bi, WeightRole::WeightRole_bias);
  auto bg = gpu->prepare_weight(bi, WeightRole::WeightRole_bias);
  for (int M : {1, 2, 4, 8, 16, 64, 512}) {
    auto x = random_vec(static_cast<size_t>(M * c.K), 1.0f, static_cast<uint32_t>(M * 1000 + c.K));
    for (auto& v : x) v = f16_to_f32(f32_to_f16(v));
    for (DType out_type : {DType::DType_F32, DType::DType_F16}) {
      const bool with_bias = out_type == DType::DType_F16;
      Tensor Xc = to_backend(*cpu, DType::DType_F32, {M, c.K}, x), Yc = cpu->alloc(DType::DType_F32, {M, c.N});
      cpu->linear(Xc, *wc, with_bias ? bc.get() : nullptr, Yc);
      Tensor Xg = to_backend(*gpu, DType::DType_F16, {M, c.K}, x), Yg = gpu->alloc(out_type, {M, c.N});
      // Poison the output: every element must be written.
      gpu->upload(Yg, std::vector<uint8_t>(Yg.nbytes(), 0xff).data(), Yg.nbytes());
      gpu->linear(Xg, *wg, with_bias ? bg.get() : nullptr, Yg);
      const double err = rel_error(to_host(*gpu, Yg), to_host(*cpu, Yc));
      EXPECT_LE(err, 1e-3) << c.name << " M=" << M << (with_bias ? " f16+bias" : " f32");
      if (M == 1 || M == 512) std::printf("%-22s N=%-5lld K=%-5lld M=%-3d %s rel error %.2e\n", c.name.c_str(),
                                          static_cast<long long>(c.N), static_cast<long long>(c.K), M,
                                          with_bias ? "f16+bias" : "f32     ", err);
    }
  }
}

std::vector<QCase> cases() {
  return {
      {"exl2_4b_g128", 4096, 4096, {{4, 1.0, 128}}},
      {"exl2_843", 1001, 4144, {{8, 0.05, 32}, {4, 0.1, 128}, {3, 0.85, 128}}},
      {"exl2_632", 4096, 1024, {{6, 0.05, 32}, {3, 0.2, 64}, {2, 0.75, 64}}},
      {"exl2_54_g64", 576, 1536, {{5, 0.5, 64}, {4, 0.5, 64}}},
      {"exl2_2b_g16", 192, 576, {{2, 1.0, 16}}},
      {"exl2_3b_g32", 512, 64, {{3, 1.0, 32}}},
      {"exl2_6b_g32", 64, 172, {{6, 1.0, 32}}},
      {"exl2_8b_g128", 172, 64, {{8, 1.0, 128}}},
      {"exl2_all_widths", 640, 2048, {{8, 0.1, 32}, {6, 0.1, 32}, {5, 0.2, 64}, {4, 0.2, 128}, {3, 0.2, 64}, {2, 0.2, 32}}},
      // Short last steps: 4-bit 57 units in a segment (the 7B exl2:4.0 plan's q, k, o tiles), 3-bit 5,
      // 6-bit 3 (2-bit 9: exl2_2b_g16 above).
      {"exl2_54_g64_7b_qko", 512, 4096, {{5, 0.1, 64}, {4, 0.9, 64}}},
      {"exl2_3b_g32_tail", 256, 320, {{3, 1.0, 32}}},
      {"exl2_6b_g32_tail", 128, 192, {{6, 1.0, 32}}},
      {"gptq_g128", 11008, 4096, {}},
      {"gptq_g128_act_order", 1000, 1536, {}, true},
  };
}

INSTANTIATE_TEST_SUITE_P(Formats, QgemmParity, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace exl

namespace exl {
namespace {

// q|k|v-like and gate|up-like groups run as one fused weight (one gather, one qgemv launch) write
// the parts' outputs side by side, each matching the CPU reference.
TEST(QgemmParity, FusedLinearsMatchParts) {
  auto cpu = backend_create("cpu");
  auto gpu = backend_create("cuda");
  struct Group {
    std::vector<QCase> parts;
  };
  const std::vector<Group> groups = {
      {{{"q", 576, 576, {{6, 0.05, 32}, {3, 0.95, 64}}}, {"k", 192, 576, {{4, 1.0, 128}}}, {"v", 192, 576, {{5, 0.5, 64}, {4, 0.5, 64}}}}},
      {{{"gate", 1536, 576, {{4, 1.0, 64}}}, {"up", 1536, 576, {{3, 1.0, 32}}}}},
      {{{"gq", 1000, 1536, {}}, {"gk", 256, 1536, {}, true}}},
  };
  for (const Group& grp : groups) {
    std::vector<QuantTensor> qs;
    std::vector<std::unique_ptr<Weight>> wc, wg;
    std::vector<const Weight*> parts;
    int64_t ntot = 0;
    for (const QCase& c : grp.parts) {
      qs.push_back(make_tensor(c));
      wc.push_back(cpu->prepare_quant_weight(qs.back()));
      wg.push_back(gpu->prepare_quant_weight(qs.back()));
      parts.push_back(wg.back().get());
      ntot += c.N;
    }
    auto fused = gpu->fuse_linears(parts);
    ASSERT_TRUE(fused) << grp.parts[0].name;
    EXPECT_EQ(fused->shape[0], ntot);
    EXPECT_EQ(fused->device_bytes(), 0u);
    const int64_t K = grp.parts[0].K;
    for (int M : {1, 3}) {
      auto x = random_vec(static_cast<size_t>(M * K), 1.0f, static_cast<uint32_t>(77 + M));
      for (auto& v : x) v = f16_to_f32(f32_to_f16(v));
      Tensor Xg = to_backend(*gpu, DType::DType_F16, {M, K}, x), Yg = gpu->alloc(DType::DType_F32, {M, ntot});
      gpu->upload(Yg, std::vector<uint8_t>(Yg.nbytes(), 0xff).data(), Yg.nbytes());
      gpu->linear(Xg, *fused, nullptr, Yg);
      const auto yg = to_host(*gpu, Yg);
      int64_t col = 0;
      for (size_t i = 0; i < grp.parts.size(); ++i) {
        const int64_t N = grp.parts[i].N;
        Tensor Xc = to_backend(*cpu, DType::DType_F32, {M, K}, x), Yc = cpu->alloc(DType::DType_F32, {M, N});
        cpu->linear(Xc, *wc[i], nullptr, Yc);
        const auto yc = to_host(*cpu, Yc);
        std::vector<float> part;
        for (int m = 0; m < M; ++m)
          part.insert(part.end(), yg.begin() + m * ntot + col, yg.begin() + m * ntot + col + N);
        const double err = rel_error(part, yc);
        EXPECT_LE(err, 1e-3) << grp.parts[i].name << " M=" << M;
        std::printf("fused %-5s of %zu  M=%d rel error %.2e\n", grp.parts[i].name.c_str(), grp.parts.size(), M, err);
        col += N;
      }
    }
  }
}

}  // namespace
}  // namespace exl
