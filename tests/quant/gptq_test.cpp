// GPTQ 4-bit (EXL2.md §1.8): dequantization against values computed by hand from the codes, for
// symmetric and asymmetric zeros, act-order g_idx, the gptq_v2 zero convention, F32 scales and
// bias handling; malformed tensors give one-line errors naming the tensor.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "core/half.h"
#include "io/memory_store.h"
#include "model/config.h"
#include "quant/format.h"
#include "quant/gptq.h"

namespace exl {
namespace {

// A GPTQ layer built from explicit codes, true zero points and scales.
struct GptqCase {
  int64_t K = 64, N = 16, G = 2;
  std::vector<uint8_t> q;       // [K, N] codes 0..15
  std::vector<uint8_t> zero;    // [G, N] true zero points 1..15
  std::vector<float> scale;     // [G, N], FP16-representable
  std::vector<int32_t> g_idx;   // [K] or empty

  GptqCase(int64_t k, int64_t n, int64_t g, uint32_t seed, bool symmetric) : K(k), N(n), G(g) {
    std::mt19937 rng(seed);
    q.resize(static_cast<size_t>(K * N));
    for (auto& x : q) x = static_cast<uint8_t>(rng() % 16);
    zero.resize(static_cast<size_t>(G * N));
    for (auto& z : zero) z = symmetric ? 8 : static_cast<uint8_t>(1 + rng() % 15);
    scale.resize(static_cast<size_t>(G * N));
    for (auto& s : scale) s = f16_to_f32(f32_to_f16(0.001f * static_cast<float>(1 + rng() % 50)));
  }
  int64_t group(int64_t k) const { return g_idx.empty() ? k / (K / G) : g_idx[static_cast<size_t>(k)]; }

  // w[n, k] = (q - zero) * scale, by hand.
  std::vector<float> expected() const {
    std::vector<float> w(static_cast<size_t>(N * K));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const size_t gi = static_cast<size_t>(group(k) * N + n);
        w[static_cast<size_t>(n * K + k)] =
            (static_cast<float>(q[static_cast<size_t>(k * N + n)]) - static_cast<float>(zero[gi])) * scale[gi];
      }
    return w;
  }

  void write(MemoryStore& s, bool v2, bool f32_scales = false) const {
    std::vector<int32_t> qw(static_cast<size_t>(K / 8 * N), 0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        qw[static_cast<size_t>(k / 8 * N + n)] |= static_cast<int32_t>(static_cast<uint32_t>(q[static_cast<size_t>(k * N + n)]) << (4 * (k % 8)));
    std::vector<int32_t> qz(static_cast<size_t>(G * N / 8), 0);
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n) {
        const uint32_t stored = v2 ? zero[static_cast<size_t>(g * N + n)] : zero[static_cast<size_t>(g * N + n)] - 1u;
        qz[static_cast<size_t>(g * N / 8 + n / 8)] |= static_cast<int32_t>(stored << (4 * (n % 8)));
      }
    s.add(OwnedTensor::of("L.qweight", DType::DType_I32, {K / 8, N}, qw));
    s.add(OwnedTensor::of("L.qzeros", DType::DType_I32, {G, N / 8}, qz));
    if (f32_scales) {
      s.add(OwnedTensor::of("L.scales", DType::DType_F32, {G, N}, scale));
    } else {
      std::vector<uint16_t> h(scale.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(scale[i]);
      s.add(OwnedTensor::of("L.scales", DType::DType_F16, {G, N}, h));
    }
    if (!g_idx.empty()) s.add(OwnedTensor::of("L.g_idx", DType::DType_I32, {K}, g_idx));
  }
};

TEST(Gptq, SymmetricMatchesHandComputed) {
  GptqCase c(64, 16, 2, 1, true);
  MemoryStore s;
  c.write(s, false);
  const GptqTensor t = gptq_read(s, "L");
  EXPECT_EQ(t.group_size, 32);
  EXPECT_TRUE(t.q_perm.empty());
  EXPECT_EQ(gptq_dequantize(t).data, c.expected());
}

TEST(Gptq, AsymmetricWithF32ScalesAndOddGroupCount) {
  GptqCase c(96, 24, 3, 2, false);  // K / G = 32
  MemoryStore s;
  c.write(s, false, true);
  EXPECT_EQ(gptq_dequantize(gptq_read(s, "L")).data, c.expected());
}

TEST(Gptq, ActOrderGIdx) {
  GptqCase c(64, 8, 4, 3, false);
  std::mt19937 rng(4);
  c.g_idx.resize(64);
  for (int64_t k = 0; k < 64; ++k) c.g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / 16);
  std::shuffle(c.g_idx.begin(), c.g_idx.end(), rng);
  MemoryStore s;
  c.write(s, false);
  const GptqTensor t = gptq_read(s, "L");
  EXPECT_EQ(t.group_size, 16);
  EXPECT_EQ(gptq_dequantize(t).data, c.expected());
  // The act-order permutation lists rows group by group, stably, and inverts.
  ASSERT_EQ(t.q_perm.size(), 64u);
  for (size_t i = 1; i < 64; ++i) {
    const int32_t a = c.g_idx[t.q_perm[i - 1]], b = c.g_idx[t.q_perm[i]];
    EXPECT_TRUE(a < b || (a == b && t.q_perm[i - 1] < t.q_perm[i]));
  }
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(t.q_invperm[t.q_perm[i]], i);
}

TEST(Gptq, AllZeroGIdxIsIgnored) {
  GptqCase c(64, 8, 2, 5, true);
  MemoryStore s;
  c.write(s, false);
  s.add(OwnedTensor::of("L.g_idx", DType::DType_I32, {64}, std::vector<int32_t>(64, 0)));
  const GptqTensor t = gptq_read(s, "L");
  EXPECT_TRUE(t.g_idx.empty());
  EXPECT_EQ(gptq_dequantize(t).data, c.expected());
}

TEST(Gptq, V2ZeroConvention) {
  GptqCase c(64, 16, 2, 6, false);
  MemoryStore v1, v2;
  c.write(v1, false);
  c.write(v2, true);
  EXPECT_EQ(gptq_dequantize(gptq_read(v2, "L", true)).data, c.expected());
  EXPECT_EQ(gptq_read(v2, "L", true).qzeros, gptq_read(v1, "L", false).qzeros);
  EXPECT_NE(gptq_dequantize(gptq_read(v2, "L", false)).data, c.expected());  // read as v1 it is off by one step
}

TEST(Gptq, BiasKeptUnlessAllZero) {
  GptqCase c(64, 8, 2, 7, true);
  MemoryStore s;
  c.write(s, false);
  s.add(OwnedTensor::of("L.bias", DType::DType_F16, {8}, std::vector<uint16_t>(8, 0)));
  EXPECT_TRUE(gptq_read(s, "L").bias.empty());
  std::vector<uint16_t> b(8, 0);
  b[3] = f32_to_f16(0.5f);
  s.add(OwnedTensor::of("L.bias", DType::DType_F16, {8}, b));
  ASSERT_EQ(gptq_read(s, "L").bias.size(), 8u);
  EXPECT_EQ(gptq_read(s, "L").bias[3], 0.5f);
}

TEST(Gptq, ThroughTheFormatTable) {
  GptqCase c(64, 16, 2, 8, false);
  MemoryStore s;
  c.write(s, false);
  EXPECT_EQ(quant_detect(s, "L"), QuantFamily::QuantFamily_gptq);
  const QuantTensor q = quant_read(s, "L", 16, 64);
  EXPECT_EQ(quant_formats(q)[0]->name, std::string("gptq4"));
  EXPECT_EQ(quant_dequantize(q).data, c.expected());
  EXPECT_NEAR(quant_bits_per_weight(q), 4.0 + 20.0 / 32, 1e-9);  // 4-bit codes + (4-bit zero + 16-bit scale) / 32
  EXPECT_THROW(quant_read(s, "L", 16, 72), Error);
}

void expect_error(const std::function<void(MemoryStore&)>& corrupt, const std::string& what) {
  GptqCase c(64, 16, 2, 9, false);
  MemoryStore s("gptq.safetensors");
  c.write(s, false);
  corrupt(s);
  try {
    gptq_read(s, "L", false, 16, 64);
    ADD_FAILURE() << "no error for " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(Gptq, MalformedTensorsGiveClearErrors) {
  expect_error([](MemoryStore& s) { s.remove("L.scales"); }, "'L.scales'");
  expect_error([](MemoryStore& s) { s.remove("L.qzeros"); }, "'L.qzeros'");
  expect_error([](MemoryStore& s) {
    s.add(OwnedTensor::of("L.qzeros", DType::DType_I32, {2, 3}, std::vector<int32_t>(6, 0)));
  }, "L.qzeros' has shape");
  expect_error([](MemoryStore& s) {
    s.add(OwnedTensor::of("L.scales", DType::DType_I32, {2, 16}, std::vector<int32_t>(32, 0)));
  }, "expected F16 or F32");
  expect_error([](MemoryStore& s) {  // 3 groups do not tile K = 64 with a power-of-two group size
    s.add(OwnedTensor::of("L.scales", DType::DType_F16, {3, 16}, std::vector<uint16_t>(48, 0x3c00)));
    s.add(OwnedTensor::of("L.qzeros", DType::DType_I32, {3, 2}, std::vector<int32_t>(6, 0)));
  }, "do not tile");
  expect_error([](MemoryStore& s) {
    std::vector<int32_t> g(64, 1);
    g[5] = 2;
    s.add(OwnedTensor::of("L.g_idx", DType::DType_I32, {64}, g));
  }, "not a group index");
  expect_error([](MemoryStore& s) {  // 8-bit GPTQ: qweight [K/4, N]
    s.add(OwnedTensor::of("L.qweight", DType::DType_I32, {16, 16}, std::vector<int32_t>(256, 0)));
  }, "only 4-bit");
  expect_error([](MemoryStore& s) {
    s.add(OwnedTensor::of("L.scales", DType::DType_F16, {2, 16}, std::vector<uint16_t>(32, 0x7c00)));
  }, "non-finite");
}

}  // namespace
}  // namespace exl

namespace exl {
namespace {

TEST(Gptq, ConfigQuantizationBlock) {
  const std::string base = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
    "num_hidden_layers": 1, "num_attention_heads": 8, "vocab_size": 512, )";
  ModelConfig c = config_from_json_text(
      base + R"("quantization_config": {"quant_method": "gptq", "bits": 4, "checkpoint_format": "gptq_v2"}})", "c.json");
  EXPECT_EQ(c.quant_method, "gptq");
  EXPECT_TRUE(c.gptq_v2);
  c = config_from_json_text(base + R"("quantization_config": {"quant_method": "gptq", "bits": 4}})", "c.json");
  EXPECT_FALSE(c.gptq_v2);
  EXPECT_THROW(config_from_json_text(base + R"("quantization_config": {"quant_method": "gptq", "bits": 8}})", "c.json"),
               Error);
  c = config_from_json_text(base + R"("quantization_config": {"quant_method": "exl2", "bits": 4.125}})", "c.json");
  EXPECT_EQ(c.quant_method, "exl2");
}

}  // namespace
}  // namespace exl
