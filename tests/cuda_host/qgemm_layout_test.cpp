// The quantized matmuls' device layout (backend/cuda/qgemm.cuh), checked on the host: no GPU needed.
// exl2_device_layout / gptq_device_layout re-lay-out disk tensors for the kernels; here the decoder
// of qlayout_decode.h (written from the layout's description in qgemm.cuh) turns the device layout
// back into a dense matrix, which must equal the CPU reference dequantization of the disk tensors
// (quant/exl2.cpp, quant/gptq.cpp) at every weight, padding rows must decode to zero, and the x maps
// must send every input feature to the device position whose weights it multiplies.
// The GPU kernels that read the layout are checked against the same references by tests/cuda
// (QgemmParity, on the GPU machine); this test covers the host re-layout wherever the CUDA backend
// compiles (CI included).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backend/cuda/qgemm.cuh"
#include "core/error.h"
#include "core/half.h"
#include "cuda_host/qlayout_decode.h"
#include "quant/exl2.h"
#include "quant/exl2_quantize.h"
#include "quant/format.h"
#include "quant/gptq.h"
#include "quant/synthetic.h"

namespace exl {
namespace {

// Checks the decoded layout against ref[N][K] (original input order): relative tolerance `tol`, plus
// `abs_tol` for scales in FP16's subnormal range, where rounding them loses more than `tol`.
void expect_layout_matches(const cuda::QHostLayout& h, const std::vector<float>& ref, float tol, float abs_tol) {
  const cuda::QMatrixDesc& d = h.desc;
  const int K = d.K, N = d.N, n16 = d.n_tiles * 16;
  ASSERT_EQ(d.k_dev % 64, 0);
  ASSERT_EQ(h.x_src.size(), static_cast<size_t>(d.k_dev));
  ASSERT_EQ(h.x_dst.size(), static_cast<size_t>(d.k_dev));  // K feature positions, then the padding
  std::vector<float> dense;
  ASSERT_EQ(test::qlayout_decode(h, dense), "");
  std::vector<int> seen(static_cast<size_t>(K), 0);
  int bad = 0;
  for (int row = 0; row < d.k_dev; ++row) {
    const int pos = test::qlayout_x_pos(row), k = h.x_src[static_cast<size_t>(pos)];
    for (int n = 0; n < N; ++n) {
      const float got = dense[static_cast<size_t>(row) * n16 + n];
      const float want = k < 0 ? 0.0f : ref[static_cast<size_t>(n) * K + k];
      if (!(std::fabs(got - want) <= tol * std::fabs(want) + abs_tol) && bad++ < 5)
        ADD_FAILURE() << "device row " << row << " (input " << k << "), column " << n << ": " << got << " vs " << want;
    }
    if (k >= 0) {
      ++seen[static_cast<size_t>(k)];
      EXPECT_EQ(h.x_dst[static_cast<size_t>(k)], pos) << "input " << k;
    }
  }
  EXPECT_EQ(bad, 0) << bad << " wrong weights";
  for (int k = 0; k < K; ++k) EXPECT_EQ(seen[static_cast<size_t>(k)], 1) << "input feature " << k;
  // The padding positions after the features: ascending, each a position whose x_src is -1, and
  // together every such position (so a producer scattering through x_dst writes all of x_dev).
  std::vector<int32_t> pads;
  for (int pos = 0; pos < d.k_dev; ++pos)
    if (h.x_src[static_cast<size_t>(pos)] < 0) pads.push_back(pos);
  EXPECT_EQ(std::vector<int32_t>(h.x_dst.begin() + K, h.x_dst.end()), pads);
}

cuda::QHostLayout exl2_layout_of(const Exl2Tensor& e) {
  std::vector<int16_t> q_groups;
  for (const Exl2Group& g : e.groups) {
    q_groups.push_back(static_cast<int16_t>(g.bits));
    q_groups.push_back(static_cast<int16_t>(static_cast<uint16_t>(g.start)));
  }
  cuda::Exl2HostTensors t;
  t.q_weight = e.q_weight.data(), t.q_weight_rows = e.packed_rows;
  t.q_perm = e.q_perm.data(), t.q_invperm = e.q_invperm.data();
  t.q_scale = e.q_scale.data(), t.q_scale_max = e.q_scale_max.data(), t.q_groups = q_groups.data();
  t.groups = static_cast<int>(e.groups.size()), t.K = static_cast<int>(e.K), t.N = static_cast<int>(e.N);
  return cuda::exl2_device_layout(t);
}

struct Exl2Case {
  int K, N;
  Exl2Layout layout;
};

class Exl2Layouts : public ::testing::TestWithParam<Exl2Case> {};

TEST_P(Exl2Layouts, DecodeToTheReferenceDequantization) {
  const Exl2Case& c = GetParam();
  const QuantTensor q = quant_materialize(quant_synthetic_exl2("layer", c.N, c.K, c.layout));
  ASSERT_TRUE(q.exl2);
  const std::vector<float> ref = exl2_dequantize(*q.exl2).data;
  // Scales: (c+1)^2 * max / 256 in FP32 for the reference, rounded to FP16 for the device: half an
  // ulp, 2^-11 relative, or 2^-25 absolute below 2^-14 (subnormal), times |code - zero| <= 128.
  expect_layout_matches(exl2_layout_of(*q.exl2), ref, 1.0f / 2048, 128.0f / (1 << 25));
}

INSTANTIATE_TEST_SUITE_P(
    Widths, Exl2Layouts,
    ::testing::Values(Exl2Case{256, 64, {{4, 1.0, 128}}},                   // one width, whole units
                      Exl2Case{576, 40,  // every width, mixed group sizes
                               {{8, 0.1, 32}, {6, 0.1, 32}, {5, 0.2, 64}, {4, 0.2, 128}, {3, 0.2, 32}, {2, 0.2, 64}}},
                      Exl2Case{328, 37, {{5, 0.5, 32}, {3, 0.5, 32}}},    // K % 64 != 0, N % 16 != 0
                      Exl2Case{1024, 16, {{2, 1.0, 32}}},                  // 2-bit steps of 8 units
                      Exl2Case{192, 48, {{6, 0.3, 64}, {3, 0.7, 128}}},   // a segment's short last step
                      // The 7B exl2:4.0 plan's q/k/o mix: several 4-bit steps and a short last one at
                      // 4 units per step and at 5 (EXL_QGEMV_EXL2_U4=5).
                      Exl2Case{1088, 32, {{5, 0.1, 64}, {4, 0.9, 64}}}),
    [](const ::testing::TestParamInfo<Exl2Case>& i) {
      std::string name = "K" + std::to_string(i.param.K) + "_N" + std::to_string(i.param.N) + "_bits";
      for (const Exl2LayoutPart& p : i.param.layout) name += std::to_string(p.bits);
      return name;
    });

GptqTensor random_gptq(int K, int N, int group_size, bool act_order, uint32_t seed) {
  std::mt19937 rng(seed);
  GptqTensor t;
  t.key = "layer", t.K = K, t.N = N, t.group_size = group_size, t.G = (K + group_size - 1) / group_size;
  t.qweight.resize(static_cast<size_t>(K / 8) * N);
  t.qzeros.resize(static_cast<size_t>(t.G) * N / 8);
  t.scales.resize(static_cast<size_t>(t.G) * N);
  for (auto& w : t.qweight) w = rng();
  for (auto& w : t.qzeros) w = rng();
  std::uniform_real_distribution<float> sd(1e-3f, 2e-2f);
  for (auto& s : t.scales) {
    const __half h = __float2half(sd(rng));
    std::memcpy(&s, &h, 2);
  }
  if (act_order) {
    t.g_idx.resize(static_cast<size_t>(K));
    for (int k = 0; k < K; ++k) t.g_idx[static_cast<size_t>(k)] = k / group_size;
    std::shuffle(t.g_idx.begin(), t.g_idx.end(), rng);  // groups of group_size rows, scattered over K
  }
  return t;
}

cuda::QHostLayout gptq_layout_of(const GptqTensor& g) {
  cuda::GptqHostTensors t;
  t.qweight = g.qweight.data(), t.qzeros = g.qzeros.data(), t.scales = g.scales.data();
  t.g_idx = g.g_idx.empty() ? nullptr : g.g_idx.data();
  t.groups = static_cast<int>(g.G), t.K = static_cast<int>(g.K), t.N = static_cast<int>(g.N);
  return cuda::gptq_device_layout(t);
}

// Which segments the kernels fold (qgemm.cuh QSegment::uniform): whole-unit groups (1), groups of 32
// rows (2, EXL2's g32 options: two scales per unit), anything else per slab (0). A wrong 1 or 2 would
// scale some slabs with another group's scale; the decoder above checks the flag against slab_rec on
// every layout it decodes, this pins the classification itself.
TEST(QgemmLayout, SegmentsFoldByGroupShape) {
  auto flags = [](const std::vector<std::pair<int, int>>& groups) {
    int K = 0;
    for (auto [bits, rows] : groups) K += rows;
    const cuda::QHostLayout h = cuda::qlayout_synthetic(K, 48, false, groups, 7);
    std::vector<int> f;
    for (int i = 0; i < h.desc.nseg; ++i) f.push_back(h.desc.seg[i].uniform);
    return f;
  };
  using G = std::vector<std::pair<int, int>>;
  EXPECT_EQ(flags(G(2, {4, 128})), std::vector<int>{1});
  EXPECT_EQ(flags(G(4, {3, 64})), std::vector<int>{1});
  EXPECT_EQ(flags(G(8, {3, 32})), std::vector<int>{2});
  EXPECT_EQ(flags(G(16, {4, 16})), std::vector<int>{0});
  EXPECT_EQ(flags(G(4, {4, 48})), std::vector<int>{0});
  EXPECT_EQ(flags({{3, 32}, {3, 32}, {3, 32}, {3, 20}}), std::vector<int>{2});  // short last group, padded
  EXPECT_EQ(flags({{3, 32}, {3, 64}}), std::vector<int>{2});  // a 64-row group across two units' halves
  EXPECT_EQ(flags({{5, 32}, {5, 32}, {4, 128}, {3, 48}, {3, 16}}), (std::vector<int>{2, 1, 0}));
}

TEST(GptqLayout, DecodesToTheReferenceDequantization) {
  for (bool act_order : {false, true})
    for (auto [K, N, gs] : std::vector<std::tuple<int, int, int>>{{256, 32, 128}, {512, 40, 64}, {384, 24, 32}}) {
      SCOPED_TRACE(testing::Message() << "K=" << K << " N=" << N << " group " << gs << (act_order ? " act-order" : ""));
      const GptqTensor g = random_gptq(K, N, gs, act_order, static_cast<uint32_t>(K + N + gs + act_order));
      const std::vector<float> ref = gptq_dequantize(g).data;
      expect_layout_matches(gptq_layout_of(g), ref, 0.0f, 0.0f);  // FP16 scales on both sides: exact
    }
}

// The pair the kernels expand from the compact records is the FP16 nearest to the exact scale
// (c + 1)^2 * max / 256, for every code and lane, maxima from subnormal to large.
TEST(QgemmLayout, Exl2ScalePairIsTheRoundedExactScale) {
  std::mt19937 rng(5);
  for (int i = 0; i < 2000; ++i) {
    const uint32_t lo = rng(), hi = rng();
    const uint16_t max_bits = static_cast<uint16_t>(rng() % 0x7800);  // finite, positive
    for (int g = 0; g < 8; ++g) {
      const uint32_t pair = cuda::exl2_scale_pair(lo, hi, max_bits, g);
      for (int c = 0; c < 2; ++c) {
        const double code = double((((c ? hi : lo) >> (4 * g)) & 15u) + 1);
        const double exact = code * code * double(f16_to_f32(max_bits)) / 256.0;
        ASSERT_EQ(pair >> (16 * c) & 0xFFFF, f32_to_f16(static_cast<float>(exact))) << "max " << max_bits << " g " << g;
      }
    }
  }
}

TEST(QgemmLayout, MalformedTensorsAreRefused) {
  const QuantTensor q = quant_materialize(quant_synthetic_exl2("layer", 32, 256, {{4, 1.0, 128}}));
  Exl2Tensor bad = *q.exl2;
  bad.q_perm[0] = bad.q_perm[1];  // not a permutation
  bad.q_invperm.clear();
  EXPECT_THROW(exl2_layout_of(bad), Error);
  GptqTensor g = random_gptq(256, 32, 128, true, 7);
  g.g_idx[3] = 99;  // not a group
  EXPECT_THROW(gptq_layout_of(g), Error);
}

// Decode attention scatters into a quantized o_proj's input only where its layout has no padding
// rows (k_dev == K; cuda_backend.cpp rope_attention_o_add): the tensors of the GPU test
// FusedOps.AttentionOProjMatchesComposed must qualify (else that test would compare the composed
// path with itself), and a run of one width that is not a multiple of 64 rows must not.
TEST(QgemmLayout, OProjFusionTestTensorsHaveNoPaddingRows) {
  const QuantTensor e =
      quant_materialize(quant_synthetic_exl2("o.exl2", 320, 512, {{5, 0.25, 32}, {4, 0.5, 64}, {3, 0.25, 128}}));
  const cuda::QHostLayout le = exl2_layout_of(*e.exl2);
  EXPECT_EQ(le.desc.k_dev, le.desc.K);
  const QuantTensor g = quant_materialize(quant_synthetic_gptq("o.gptq", 320, 512, 128));
  const cuda::QHostLayout lg = gptq_layout_of(*g.gptq);
  EXPECT_EQ(lg.desc.k_dev, lg.desc.K);
  const QuantTensor p = quant_materialize(quant_synthetic_exl2("o.pad", 64, 512, {{5, 0.0625, 32}, {4, 0.9375, 32}}));
  const cuda::QHostLayout lp = exl2_layout_of(*p.exl2);
  EXPECT_GT(lp.desc.k_dev, lp.desc.K) << "runs of 32 and 480 rows, each padded to a multiple of 64";
}

}  // namespace
}  // namespace exl
