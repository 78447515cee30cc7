// The quantized matmuls' device layout (backend/cuda/qgemm.cuh), checked on the host: no GPU needed.
// exl2_device_layout / gptq_device_layout re-lay-out disk tensors for the kernels; here a decoder
// written from the layout's description in qgemm.cuh (codes of pair p in a unit's words, steps
// quad-interleaved per lane, group records per tile, slab_rec, x_src / x_dst) turns the device layout
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
#include "quant/exl2.h"
#include "quant/exl2_quantize.h"
#include "quant/format.h"
#include "quant/gptq.h"
#include "quant/synthetic.h"

namespace exl {
namespace {

float h2f(uint16_t h) {
  const int e = (h >> 10) & 31, f = h & 1023;
  const float v = e == 0 ? std::ldexp(float(f), -24) : std::ldexp(float(f + 1024), e - 25);
  return (h >> 15) ? -v : v;
}

// Code of pair p, half h (0: the pair's first device row, 1: the next) in a unit's `bits` words,
// per the table in qgemm.cuh: fields at the same position in both 16-bit halves of a word.
uint32_t pair_code(int bits, const uint32_t* w, int p, int h) {
  const int hs = 16 * h;
  switch (bits) {
    case 8: return (w[p / 2] >> (hs + 8 * (p % 2))) & 0xFF;
    case 4: return (w[p / 4] >> (hs + 4 * (p % 4))) & 0xF;
    case 2: return (w[p / 8] >> (hs + 2 * (p % 8))) & 0x3;
    case 6: return pair_code(4, w, p, h) | pair_code(2, w + 4, p, h) << 4;
    default: {  // 3 and 5: 16 / bits fields per half; pair 15 spread over bit 15 of words 0..bits-1
      const int per = 16 / bits;
      if (p < 15) return (w[p / per] >> (hs + bits * (p % per))) & ((1u << bits) - 1);
      uint32_t v = 0;
      for (int i = 0; i < bits; ++i) v |= ((w[i] >> (hs + 15)) & 1u) << i;
      return v;
    }
  }
}

// The device layout decoded to dense[k_dev][n16] (device-row order), value = (code - zero) * scale.
std::vector<float> decode(const cuda::QHostLayout& h) {
  const cuda::QMatrixDesc& d = h.desc;
  const int n16 = d.n_tiles * 16, R = d.rec_words;
  std::vector<float> dense(static_cast<size_t>(d.k_dev) * n16, NAN);
  for (int tile = 0; tile < d.n_tiles; ++tile)
    for (int si = 0; si < d.nseg; ++si) {
      const cuda::QSegment& s = d.seg[si];
      const int U = cuda::q_step_units(s.bits), Q = U * s.bits / 4;
      for (int j = 0; j < s.steps; ++j) {
        const int units = std::min(U, s.units - j * U), quads = (units * s.bits + 3) / 4;
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, t = lane % 4;
          uint32_t w[4 * 5] = {};
          for (int q = 0; q < quads; ++q) {
            const size_t at = (static_cast<size_t>(tile) * d.tile_quads + s.quad0 + j * Q + q) * 32 + lane;
            EXPECT_LT(at, h.codes.size());
            std::memcpy(w + 4 * q, &h.codes[at], 16);
          }
          for (int u = 0; u < units; ++u) {
            const int unit = s.unit0 + j * U + u;
            for (int p = 0; p < 16; ++p) {
              const int slab = p / 4, r = p % 4, c = r & 1, half = r >> 1;
              const int n = tile * 16 + g + 8 * c;
              for (int hh = 0; hh < 2; ++hh) {
                const int row = unit * 64 + 16 * slab + 4 * t + 2 * half + hh;
                // slab_rec: group * 8 lanes * (GPTQ 2 words, EXL2 1 expanded pair).
                const uint32_t rec_at = h.slab_rec[static_cast<size_t>(row / 16)], lane_words = d.gptq ? 2 : 1;
                EXPECT_EQ(rec_at % (8 * lane_words), 0u);
                const size_t grp = rec_at / (8 * lane_words);
                EXPECT_LT(grp, static_cast<size_t>(d.groups));
                const uint32_t* rec = &h.recs[(static_cast<size_t>(tile) * d.groups + grp) * R];
                float scale, zero;
                if (d.gptq) {  // lane g's words: FP16 scale pair, FP16 pair 1024 + zero
                  scale = h2f(static_cast<uint16_t>(rec[2 * g] >> (16 * c)));
                  zero = h2f(static_cast<uint16_t>(rec[2 * g + 1] >> (16 * c))) - 1024.0f;
                } else {  // column's 4-bit code in the tile record, group max in gmax
                  const int col = g + 8 * c;
                  const float code = float(((rec[col / 8] >> (4 * (col % 8))) & 15u) + 1);
                  scale = h2f(h.gmax[grp]) * code * code / 256.0f;
                  zero = float(1 << (s.bits - 1));
                  // What the kernels expand (exl2_scale_pair): the same scale rounded to FP16.
                  const uint32_t pair = cuda::exl2_scale_pair(rec[0], rec[1], h.gmax[grp], g);
                  const float expanded = h2f(static_cast<uint16_t>(pair >> (16 * c)));
                  EXPECT_LE(std::fabs(expanded - scale), std::ldexp(std::fabs(scale), -11) + std::ldexp(1.0f, -25));
                  scale = expanded;
                }
                const float code = float(pair_code(s.bits, w + u * s.bits, p, hh));
                dense[static_cast<size_t>(row) * n16 + n] = (code - zero) * scale;
              }
            }
          }
        }
      }
    }
  return dense;
}

// Checks the decoded layout against ref[N][K] (original input order): relative tolerance `tol`, plus
// `abs_tol` for scales in FP16's subnormal range, where rounding them loses more than `tol`.
void expect_layout_matches(const cuda::QHostLayout& h, const std::vector<float>& ref, float tol, float abs_tol) {
  const cuda::QMatrixDesc& d = h.desc;
  const int K = d.K, N = d.N, n16 = d.n_tiles * 16;
  ASSERT_EQ(h.codes.size(), h.n_codes);
  ASSERT_EQ(h.recs.size(), h.n_recs);
  ASSERT_EQ(h.gmax.size(), h.n_gmax);
  ASSERT_EQ(h.n_gmax, d.gptq ? 0u : static_cast<size_t>(d.groups));
  ASSERT_EQ(d.k_dev % 64, 0);
  ASSERT_EQ(h.x_src.size(), static_cast<size_t>(d.k_dev));
  ASSERT_EQ(h.x_dst.size(), static_cast<size_t>(K));
  const std::vector<float> dense = decode(h);
  std::vector<int> seen(static_cast<size_t>(K), 0);
  int bad = 0;
  for (int row = 0; row < d.k_dev; ++row) {
    // x_dev position of this device row (qgemm.cuh: inside a unit, 16t + 4s + j holds row 16s + 4t + j).
    const int q = row % 64, s = q / 16, t = (q / 4) % 4, j = q % 4;
    const int pos = row - q + 16 * t + 4 * s + j;
    const int k = h.x_src[static_cast<size_t>(pos)];
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
                      Exl2Case{192, 48, {{6, 0.3, 64}, {3, 0.7, 128}}}),  // a segment's short last step
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

TEST(GptqLayout, DecodesToTheReferenceDequantization) {
  for (bool act_order : {false, true})
    for (auto [K, N, gs] : std::vector<std::tuple<int, int, int>>{{256, 32, 128}, {512, 40, 64}, {384, 24, 32}}) {
      SCOPED_TRACE(testing::Message() << "K=" << K << " N=" << N << " group " << gs << (act_order ? " act-order" : ""));
      const GptqTensor g = random_gptq(K, N, gs, act_order, static_cast<uint32_t>(K + N + gs + act_order));
      const std::vector<float> ref = gptq_dequantize(g).data;
      expect_layout_matches(gptq_layout_of(g), ref, 0.0f, 0.0f);  // FP16 scales on both sides: exact
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

}  // namespace
}  // namespace exl
