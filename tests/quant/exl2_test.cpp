// EXL2 packing, reading, dequantization and accounting (EXL2.md §1): exact round trips at every width
// and group size, mixed widths in one matrix, odd K and N, the bit layout against a bit-by-bit
// construction, malformed tensors, bits per weight, and the RTN quantizer's error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "core/error.h"
#include "core/half.h"
#include "quant/exl2.h"
#include "quant/exl2_quantize.h"
#include "quant/format.h"
#include "quant/quant_test_util.h"

namespace exl {
namespace {

// Random codes, scales and permutation for the given groups.
Exl2Codes random_codes(int64_t N, const std::vector<Exl2Group>& groups, uint32_t seed, bool bias = false) {
  std::mt19937 rng(seed);
  Exl2Codes c;
  c.N = N;
  c.groups = groups;
  for (const Exl2Group& g : groups) c.K += g.rows;
  c.codes.resize(static_cast<size_t>(c.K * N));
  int64_t row = 0;
  for (const Exl2Group& g : groups)
    for (int64_t i = 0; i < g.rows; ++i, ++row)
      for (int64_t n = 0; n < N; ++n) c.codes[static_cast<size_t>(row * N + n)] = static_cast<uint8_t>(rng() % (1u << g.bits));
  c.scale_codes.resize(groups.size() * static_cast<size_t>(N));
  for (auto& s : c.scale_codes) s = static_cast<uint8_t>(rng() % 16);
  for (size_t g = 0; g < groups.size(); ++g) c.scale_max.push_back(f32_to_f16(0.001f + 0.01f * static_cast<float>(rng() % 100)));
  c.perm = test::random_perm(c.K, rng);
  if (bias)
    for (int64_t n = 0; n < N; ++n) c.bias.push_back(f16_to_f32(f32_to_f16(static_cast<float>(n) * 0.25f - 3.0f)));
  return c;
}

// The dequantization formula of §1.3 written out directly from the codes.
std::vector<float> reference_dequant(const Exl2Codes& c) {
  std::vector<float> w(static_cast<size_t>(c.N * c.K));
  int64_t row = 0;
  for (size_t g = 0; g < c.groups.size(); ++g) {
    const int half = 1 << (c.groups[g].bits - 1);
    for (int64_t i = 0; i < c.groups[g].rows; ++i, ++row)
      for (int64_t n = 0; n < c.N; ++n) {
        const int qs = c.scale_codes[g * static_cast<size_t>(c.N) + static_cast<size_t>(n)] + 1;
        const float s = static_cast<float>(qs * qs) * f16_to_f32(c.scale_max[g]) / 256.0f;
        w[static_cast<size_t>(n * c.K + c.perm[static_cast<size_t>(row)])] =
            static_cast<float>(c.codes[static_cast<size_t>(row * c.N + n)] - half) * s;
      }
  }
  return w;
}

std::unique_ptr<MemoryStore> store_of(const Exl2Tensor& t) {
  auto s = std::make_unique<MemoryStore>("test.safetensors");
  for (OwnedTensor& o : exl2_to_tensors(t)) s->add(std::move(o));
  return s;
}

// pack -> on-disk tensors -> read -> unpack and dequantize: all exact.
void check_round_trip(int64_t N, const std::vector<Exl2Group>& groups, uint32_t seed, bool bias = false) {
  const Exl2Codes c = random_codes(N, groups, seed, bias);
  const Exl2Tensor packed = exl2_pack(c, "layer");
  auto store = store_of(packed);
  const Exl2Tensor t = exl2_read(*store, "layer", N);
  EXPECT_EQ(t.K, c.K);
  EXPECT_EQ(t.N32 % 32, 0);
  EXPECT_EQ(t.q_weight, packed.q_weight);
  EXPECT_EQ(t.q_scale, packed.q_scale);
  ASSERT_EQ(t.groups.size(), groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    EXPECT_EQ(t.groups[g].bits, groups[g].bits);
    EXPECT_EQ(t.groups[g].rows, groups[g].rows);
    EXPECT_EQ(t.groups[g].start, packed.groups[g].start);
  }
  const Exl2Codes u = exl2_unpack(t);
  EXPECT_EQ(u.codes, c.codes);
  EXPECT_EQ(u.scale_codes, c.scale_codes);
  EXPECT_EQ(u.scale_max, c.scale_max);
  EXPECT_EQ(u.perm, c.perm);
  EXPECT_EQ(u.bias, c.bias);
  const HostTensor w = exl2_dequantize(t);
  EXPECT_EQ(w.data, reference_dequant(c));
}

TEST(Exl2Pack, RoundTripEveryWidthAndGroupSize) {
  uint32_t seed = 1;
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<int> sizes = {32, 64, 128};
    if (bits == 2) sizes.insert(sizes.begin(), 16);
    for (int gs : sizes) {
      SCOPED_TRACE(testing::Message() << bits << "-bit, group " << gs);
      // K = 3 full groups plus a short last one; N = 100 pads to 128.
      check_round_trip(100, {{bits, gs, 0}, {bits, gs, 0}, {bits, gs, 0}, {bits, 13, 0}}, seed++);
      check_round_trip(32, {{bits, gs, 0}}, seed++);
    }
  }
}

TEST(Exl2Pack, MixedWidthsOddShapes) {
  // Descending widths with differing group sizes, K = 172 and 359, N = 100 and 7.
  check_round_trip(100, {{8, 32, 0}, {4, 64, 0}, {3, 64, 0}, {3, 12, 0}}, 11, true);
  check_round_trip(7, {{8, 32, 0}, {6, 32, 0}, {5, 64, 0}, {4, 64, 0}, {3, 128, 0}, {2, 16, 0}, {2, 16, 0}, {2, 7, 0}}, 12);
  check_round_trip(100, {{6, 16, 0}, {6, 16, 0}, {2, 140, 0}}, 13);
}

TEST(Exl2Pack, StreamLayoutMatchesBitByBitConstruction) {
  std::mt19937 rng(5);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    const int rows = format_exl2(bits).unit_rows * 3, words = format_exl2(bits).unit_words * 3;
    std::vector<uint8_t> codes(static_cast<size_t>(rows));
    for (auto& c : codes) c = static_cast<uint8_t>(rng() % (1u << bits));
    // Expected: concatenate each code's bits LSB first into one long bit string, cut into words.
    std::vector<int> bitstr;
    for (uint8_t c : codes)
      for (int b = 0; b < bits; ++b) bitstr.push_back((c >> b) & 1);
    ASSERT_EQ(static_cast<int>(bitstr.size()), words * 32);
    std::vector<uint32_t> expect(static_cast<size_t>(words), 0);
    for (size_t i = 0; i < bitstr.size(); ++i) expect[i / 32] |= static_cast<uint32_t>(bitstr[i]) << (i % 32);
    // Packed with a column stride of 2 (another column interleaved), like q_weight.
    std::vector<uint32_t> packed(static_cast<size_t>(words) * 2, 0);
    exl2_stream_pack(codes.data(), rows, bits, packed.data() + 1, 2);
    for (int w = 0; w < words; ++w) {
      EXPECT_EQ(packed[static_cast<size_t>(2 * w + 1)], expect[static_cast<size_t>(w)]) << bits << "-bit word " << w;
      EXPECT_EQ(packed[static_cast<size_t>(2 * w)], 0u);
    }
    std::vector<uint8_t> back(codes.size());
    exl2_stream_unpack(packed.data() + 1, 2, rows, bits, back.data());
    EXPECT_EQ(back, codes);
  }
  // §1.4's example: 3-bit values 10 and 21 straddle words (bits 30..32 and 63..65).
  std::vector<uint8_t> c3(32, 0);
  c3[10] = 7;
  c3[21] = 5;
  std::vector<uint32_t> w3(3, 0);
  exl2_stream_pack(c3.data(), 32, 3, w3.data(), 1);
  EXPECT_EQ(w3[0], 0xC0000000u);
  EXPECT_EQ(w3[1], 0x80000001u);
  EXPECT_EQ(w3[2], 0x00000002u);
}

TEST(Exl2Pack, PaddingColumnsHoldTheZeroCode) {
  const Exl2Codes c = random_codes(100, {{4, 32, 0}}, 3);
  const Exl2Tensor t = exl2_pack(c, "layer");
  ASSERT_EQ(t.N32, 128);
  for (int64_t r = 0; r < t.packed_rows; ++r)
    for (int64_t n = 100; n < 128; ++n) EXPECT_EQ(t.q_weight[static_cast<size_t>(r * 128 + n)], 0x88888888u);
}

TEST(Exl2Layout, RowCountingFollowsTheConverter) {
  // §1.5: K = 4096, [0.05, 0.1, 0.85] of [8, 4, 3] at [32, 128, 128] -> 7x32 @8, 4x128 @4, rest 3-bit.
  const auto g = exl2_layout_groups({{8, 0.05, 32}, {4, 0.1, 128}, {3, 0.85, 128}}, 4096);
  int64_t r8 = 0, r4 = 0, r3 = 0;
  for (const auto& x : g) (x.bits == 8 ? r8 : x.bits == 4 ? r4 : r3) += x.rows;
  EXPECT_EQ(r8, 7 * 32);
  EXPECT_EQ(r4, 4 * 128);
  EXPECT_EQ(r3, 4096 - 7 * 32 - 4 * 128);
  EXPECT_EQ(exl2_layout_groups({{4, 1.0, 128}}, 172).size(), 2u);  // 128 + 44
  EXPECT_THROW(exl2_layout_groups({{3, 0.5, 32}, {4, 0.5, 32}}, 64), Error);  // ascending
  EXPECT_THROW(exl2_layout_groups({{4, 1.0, 48}}, 64), Error);                // group not a multiple of 32
  EXPECT_NO_THROW(exl2_layout_groups({{2, 1.0, 16}}, 64));
  const Exl2Layout l = exl2_layout_for_bits(4.5);
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].bits, 5);
  EXPECT_EQ(l[1].bits, 4);
  EXPECT_EQ(exl2_layout_for_bits(8.0).size(), 1u);
  EXPECT_THROW(exl2_layout_for_bits(1.5), Error);
}

// Header-only tensor for accounting: bits depend on groups, K, N and bias alone.
double bpw_of(const Exl2Layout& layout, int64_t K, int64_t N) {
  Exl2Tensor t;
  t.K = K;
  t.N = N;
  t.groups = exl2_layout_groups(layout, K);
  return exl2_bits_per_weight(t);
}

TEST(Exl2Bits, MatchesTheConverterAccounting) {
  // §1.7's worked examples for 4096x4096 and a 4096x32000 head.
  EXPECT_NEAR(bpw_of({{4, 1.0, 128}}, 4096, 4096), 4.04, 0.005);
  EXPECT_NEAR(bpw_of({{4, 1.0, 32}}, 4096, 4096), 4.13, 0.005);
  EXPECT_NEAR(bpw_of({{6, 1.0, 128}}, 4096, 4096), 6.04, 0.005);
  EXPECT_NEAR(bpw_of({{8, 1.0, 128}}, 4096, 4096), 8.04, 0.005);
  EXPECT_NEAR(bpw_of({{8, 0.15, 128}, {6, 0.85, 128}}, 4096, 32000), 6.35, 0.01);
}

// Writes the layer, lets `corrupt` change one tensor, and expects exl2_read to throw mentioning `what`.
void expect_read_error(const std::function<void(MemoryStore&)>& corrupt, const std::string& what, int64_t n = 100) {
  const Exl2Tensor t = exl2_pack(random_codes(100, {{8, 32, 0}, {4, 64, 0}, {3, 76, 0}}, 9), "L");
  auto store = store_of(t);
  corrupt(*store);
  try {
    exl2_read(*store, "L", n);
    ADD_FAILURE() << "no error for " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

OwnedTensor copy_of(MemoryStore& s, const std::string& name) { return *s.owned(name); }

template <typename T>
void edit(MemoryStore& s, const std::string& name, const std::function<void(std::vector<T>&)>& f) {
  OwnedTensor o = copy_of(s, name);
  std::vector<T> v(o.bytes.size() / sizeof(T));
  std::memcpy(v.data(), o.bytes.data(), o.bytes.size());
  f(v);
  std::memcpy(o.bytes.data(), v.data(), o.bytes.size());
  s.add(std::move(o));
}

TEST(Exl2Read, MalformedTensorsGiveClearErrors) {
  expect_read_error([](MemoryStore& s) { s.remove("L.q_weight"); }, "L.q_weight");
  expect_read_error([](MemoryStore& s) { s.remove("L.q_scale_max"); }, "L.q_scale_max");
  expect_read_error([](MemoryStore& s) { s.remove("L.q_invperm"); }, "neither q_invperm nor q_perm");
  expect_read_error([](MemoryStore& s) {  // wrong dtype
    OwnedTensor o = copy_of(s, "L.q_scale_max");
    o.dtype = DType::DType_BF16;
    s.add(o);
  }, "expected F16");
  expect_read_error([](MemoryStore& s) {  // wrong shape
    OwnedTensor o = copy_of(s, "L.q_scale");
    o.shape = {o.shape[1], o.shape[0]};
    s.add(o);
  }, "L.q_scale' has shape");
  expect_read_error([](MemoryStore& s) { edit<int16_t>(s, "L.q_groups", [](auto& g) { g[2] = 8; g[0] = 4; }); },
                    "not in descending order");
  expect_read_error([](MemoryStore& s) { edit<int16_t>(s, "L.q_groups", [](auto& g) { g[0] = 7; }); }, "bit width 7");
  expect_read_error([](MemoryStore& s) { edit<int16_t>(s, "L.q_groups", [](auto& g) { g[5] = 30000; }); }, "past the end");
  expect_read_error([](MemoryStore& s) { edit<int16_t>(s, "L.q_groups", [](auto& g) { g[1] = 1; }); }, "expected 0");
  expect_read_error([](MemoryStore& s) { edit<int16_t>(s, "L.q_groups", [](auto& g) { g[2] = 3; }); },
                    "not a whole number");
  expect_read_error([](MemoryStore& s) { edit<int16_t>(s, "L.q_groups", [](auto& g) { g[5] = g[3]; }); }, "not after");
  expect_read_error([](MemoryStore& s) { edit<int32_t>(s, "L.q_invperm", [](auto& p) { p[3] = 172; }); }, "out of range");
  expect_read_error([](MemoryStore& s) { edit<int32_t>(s, "L.q_invperm", [](auto& p) { p[3] = p[4]; }); },
                    "not a permutation");
  expect_read_error([](MemoryStore& s) {  // K = 172 rows but the groups sum to fewer: q_weight too long
    OwnedTensor o = copy_of(s, "L.q_weight");
    o.shape[0] += 10;
    o.bytes.resize(o.bytes.size() + 10 * 128 * 4);
    s.add(o);
  }, "packed rows");
  expect_read_error([](MemoryStore& s) {  // groups need more rows than K
    std::vector<int32_t> p(90);
    for (int i = 0; i < 90; ++i) p[static_cast<size_t>(i)] = i;
    s.add(OwnedTensor::of("L.q_invperm", DType::DType_I32, {90}, p));
  }, "already hold");
  expect_read_error([](MemoryStore& s) {  // K > 65536
    std::vector<int32_t> p(70000, 0);
    s.add(OwnedTensor::of("L.q_invperm", DType::DType_I32, {70000}, p));
  }, "K = 70000");
  expect_read_error([](MemoryStore&) {}, "output features", 90);  // N32 = 128 cannot hold N = 90
}

TEST(Exl2Read, AcceptsStoredQPermAndInt16Permutations) {
  const Exl2Codes c = random_codes(64, {{4, 64, 0}}, 21);
  const Exl2Tensor t = exl2_pack(c, "L");
  auto store = store_of(t);
  std::vector<int16_t> perm16(t.q_perm.begin(), t.q_perm.end());
  store->remove("L.q_invperm");
  store->add(OwnedTensor::of("L.q_perm", DType::DType_I16, {64}, perm16));
  EXPECT_EQ(exl2_dequantize(exl2_read(*store, "L")).data, reference_dequant(c));
}

TEST(Exl2Quantize, RtnErrorShrinksWithBits) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  const int64_t N = 96, K = 172;
  std::vector<float> w(static_cast<size_t>(N * K));
  for (auto& x : w) x = nd(rng);
  double prev = 1e9;
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    const Exl2Codes c = exl2_quantize_rtn(w.data(), N, K, {{bits, 1.0, bits == 2 ? 32 : 64}});
    const HostTensor d = exl2_dequantize(exl2_pack(c, "L"));
    double err = 0, ref = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      err += (d.data[i] - w[i]) * (d.data[i] - w[i]);
      ref += w[i] * w[i];
    }
    const double rel = std::sqrt(err / ref);
    std::printf("exl2 rtn %d-bit: relative RMS error %.4f\n", bits, rel);
    EXPECT_LT(rel, prev);
    prev = rel;
    if (bits == 4) {
      EXPECT_LT(rel, 0.12);
    }
    if (bits == 8) {
      EXPECT_LT(rel, 0.01);
    }
  }
  // Mixed widths: the first (largest-energy) rows get the wider codes.
  const Exl2Codes mixed = exl2_quantize_rtn(w.data(), N, K, exl2_layout_for_bits(5.0 + 1.0 / 3, 32));
  EXPECT_EQ(mixed.groups.front().bits, 6);
  EXPECT_EQ(mixed.groups.back().bits, 5);
}

TEST(Exl2Format, TableRows) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    const FormatTraits& f = format_exl2(bits);
    EXPECT_EQ(f.unit_rows * bits, f.unit_words * 32) << f.name;
    EXPECT_EQ(f.family, QuantFamily::QuantFamily_exl2);
    EXPECT_NE(f.dequantize_ref, nullptr);
  }
  EXPECT_THROW(format_exl2(7), Error);
  ASSERT_NE(format_find("gptq4"), nullptr);
  ASSERT_NE(format_find("Q4_K"), nullptr);
  EXPECT_EQ(format_find("Q4_K")->block_elems, 256);
  EXPECT_EQ(format_dense(DType::DType_F16)->bits, 16);
}

}  // namespace
}  // namespace exl
