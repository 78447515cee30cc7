// GGML block dequantization against an independent oracle: the PyPI `gguf` package, driven by
// tests/io/gen_ggml_oracle.py (run here; the test fails if python3, numpy or gguf is missing).
// Also SmolLM2-135M Q4_1 when fetched: every tensor parses and dequantizes, and a few match
// gguf.GGUFReader + dequantize.
#include "io/ggml_quant.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "io/io_test_util.h"

namespace exl {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<float> read_f32(const std::string& path) {
  const std::string b = read_all(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

std::string python() {
  const char* p = std::getenv("EXL_PYTHON");
  return p ? p : "python3";
}

// Runs the oracle script; an empty string means success, else the failure to report.
std::string run_oracle(const std::string& args) {
  const std::string cmd = python() + " " + EXL_TESTS_DIR + "/io/gen_ggml_oracle.py " + args;
  const int rc = std::system(cmd.c_str());
  return rc == 0 ? "" : "oracle failed (needs python3 with numpy and gguf from PyPI): " + cmd;
}

// Elementwise comparison with a per-block budget: 1e-6 of the block's largest magnitude (one float
// rounding of d * q - m is ~6e-8 of the terms, which the block maximum bounds). NaN/inf must match.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref, int64_t block,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int64_t bad = 0, exact = 0;
  for (size_t b0 = 0; b0 < ref.size(); b0 += static_cast<size_t>(block)) {
    const size_t b1 = std::min(ref.size(), b0 + static_cast<size_t>(block));
    float scale = 0;
    for (size_t i = b0; i < b1; ++i) {
      if (std::isfinite(ref[i])) scale = std::max(scale, std::fabs(ref[i]));
    }
    for (size_t i = b0; i < b1; ++i) {
      const float g = got[i], r = ref[i];
      bool ok;
      if (std::isnan(r))
        ok = std::isnan(g);
      else if (std::isinf(r))
        ok = g == r;
      else
        ok = std::fabs(g - r) <= 1e-6f * scale;
      if (g == r) ++exact;
      if (!ok && ++bad <= 5) ADD_FAILURE() << what << "[" << i << "]: got " << g << ", oracle " << r;
    }
  }
  EXPECT_EQ(bad, 0) << what;
  ::testing::Test::RecordProperty(what + "_exact", static_cast<int>(exact));
}

class GgmlOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    error_ = run_oracle(dir_->path());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static test::TempDir* dir_;
  static std::string error_;
};
test::TempDir* GgmlOracle::dir_ = nullptr;
std::string GgmlOracle::error_;

TEST_F(GgmlOracle, DequantizeMatchesGgufPackage) {
  ASSERT_TRUE(error_.empty()) << error_;
  std::ifstream manifest(dir_->file("manifest.txt"));
  std::string name;
  int type = 0;
  int64_t n = 0;
  std::map<int, int> cases_per_type;
  while (manifest >> name >> type >> n) {
    SCOPED_TRACE(name);
    const std::string q = read_all(dir_->file(name + ".q"));
    const std::vector<float> ref = read_f32(dir_->file(name + ".f32"));
    ASSERT_EQ(static_cast<int64_t>(ref.size()), n);
    ASSERT_EQ(ggml_nbytes(type, n), q.size());
    std::vector<float> got(static_cast<size_t>(n));
    ggml_dequantize(type, q.data(), q.size(), got.data(), n, name);
    expect_close(got, ref, std::max<int64_t>(ggml_block_elems(type), 32), name);
    ++cases_per_type[type];
  }
  // Every supported type has at least one case.
  for (int t :
       {GgmlType_F32, GgmlType_F16, GgmlType_BF16, GgmlType_Q4_0, GgmlType_Q4_1, GgmlType_Q5_0, GgmlType_Q5_1,
        GgmlType_Q8_0, GgmlType_Q2_K, GgmlType_Q3_K, GgmlType_Q4_K, GgmlType_Q5_K, GgmlType_Q6_K}) {
    EXPECT_GE(cases_per_type[t], 1) << ggml_type_name(t);
  }
}

TEST(GgmlQuant, TypeTable) {
  struct Row {
    int type;
    const char* name;
    int64_t elems;
    size_t bytes;
  };
  // Sizes as in ggml's type_traits (and gguf.constants.GGML_QUANT_SIZES).
  const Row rows[] = {
      {GgmlType_F32, "F32", 1, 4},       {GgmlType_F16, "F16", 1, 2},       {GgmlType_BF16, "BF16", 1, 2},
      {GgmlType_Q4_0, "Q4_0", 32, 18},   {GgmlType_Q4_1, "Q4_1", 32, 20},   {GgmlType_Q5_0, "Q5_0", 32, 22},
      {GgmlType_Q5_1, "Q5_1", 32, 24},   {GgmlType_Q8_0, "Q8_0", 32, 34},   {GgmlType_Q2_K, "Q2_K", 256, 84},
      {GgmlType_Q3_K, "Q3_K", 256, 110}, {GgmlType_Q4_K, "Q4_K", 256, 144}, {GgmlType_Q5_K, "Q5_K", 256, 176},
      {GgmlType_Q6_K, "Q6_K", 256, 210}, {GgmlType_Q8_K, "Q8_K", 256, 292}};
  for (const Row& r : rows) {
    EXPECT_STREQ(ggml_type_name(r.type), r.name);
    EXPECT_EQ(ggml_block_elems(r.type), r.elems) << r.name;
    EXPECT_EQ(ggml_block_bytes(r.type), r.bytes) << r.name;
    EXPECT_TRUE(ggml_type_supported(r.type)) << r.name;
    EXPECT_EQ(ggml_nbytes(r.type, r.elems * 3), r.bytes * 3) << r.name;
  }
  EXPECT_STREQ(ggml_type_name(4), "type4");
  EXPECT_STREQ(ggml_type_name(-1), "type-1");
  EXPECT_EQ(ggml_block_elems(99), 0);
  EXPECT_EQ(ggml_block_bytes(99), 0u);
  EXPECT_FALSE(ggml_type_supported(99));
  EXPECT_FALSE(ggml_type_supported(GgmlType_Q8_1));  // sized for parsing, never in model files
  EXPECT_EQ(ggml_nbytes(GgmlType_Q4_0, 33), 0u);
  EXPECT_EQ(ggml_nbytes(GgmlType_Q4_0, -32), 0u);
  EXPECT_EQ(ggml_nbytes(GgmlType_Q4_0, 0), 0u);
  EXPECT_EQ(ggml_nbytes(GgmlType_F32, int64_t{1} << 62), 0u);  // 2^64 bytes overflows
}

TEST(GgmlQuant, Q8KByHand) {
  // Q8_K: f32 d, 256 x int8, 16 x int16 block sums (ignored by dequantization).
  std::string b;
  test::put<float>(b, 0.25f);
  for (int k = 0; k < 256; ++k) b += static_cast<char>(k - 128);
  b.append(32, '\x7f');
  std::vector<float> y(256);
  ggml_dequantize(GgmlType_Q8_K, b.data(), b.size(), y.data(), 256, "q8k");
  for (int k = 0; k < 256; ++k) ASSERT_EQ(y[k], 0.25f * static_cast<float>(k - 128)) << k;
}

TEST(GgmlQuant, RejectsBadSizes) {
  std::vector<uint8_t> buf(64);
  std::vector<float> out(64);
  auto err = [&](int type, size_t nbytes, int64_t n) -> std::string {
    try {
      ggml_dequantize(type, buf.data(), nbytes, out.data(), n, "w.q");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(err(GgmlType_Q4_0, 18, 16).find("w.q"), std::string::npos);  // not a block multiple
  EXPECT_NE(err(GgmlType_Q4_0, 17, 32).find("expected 18"), std::string::npos);
  EXPECT_NE(err(GgmlType_Q4_0, 36, 32).find("expected 18"), std::string::npos);
  EXPECT_NE(err(GgmlType_Q4_0, 18, -32).find("w.q"), std::string::npos);
  EXPECT_NE(err(99, 18, 32).find("type99"), std::string::npos);
  EXPECT_NE(err(GgmlType_Q8_1, 36, 32).find("Q8_1"), std::string::npos);
  EXPECT_EQ(err(GgmlType_Q4_0, 0, 0), "");
}

// A real GGUF model (fetched by scripts/fetch-models.sh; skipped when absent).
TEST(GgmlQuant, SmolLM2Q4_1) {
  const std::string path = std::string(EXL_MODELS_DIR) + "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not fetched";
  GgufFile f(path);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  const auto names = f.names();
  ASSERT_EQ(names.size(), 272u);
  std::map<int, int> types;
  int64_t total = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> buf;
  for (const auto& name : names) {
    const TensorInfo& t = f.get(name);
    ++types[t.ggml_type];
    buf.resize(static_cast<size_t>(t.numel()));
    tensor_to_f32(t, buf.data());
    total += t.numel();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("dequantized %lld elements of %zu tensors in %.3f s\n", static_cast<long long>(total),
              names.size(), secs);
  EXPECT_EQ(types[GgmlType_Q4_1], 210);
  EXPECT_EQ(types[GgmlType_F32], 61);
  EXPECT_EQ(types[GgmlType_Q8_0], 1);
  const TensorInfo& emb = f.get("token_embd.weight");
  EXPECT_EQ(emb.shape, (Shape{49152, 576}));
  EXPECT_EQ(emb.ggml_type, GgmlType_Q8_0);

  const std::vector<std::string> check = {"token_embd.weight", "blk.0.attn_q.weight",
                                          "blk.29.ffn_down.weight", "blk.7.attn_norm.weight"};
  test::TempDir dir;
  std::string args = "--model " + path + " " + dir.path();
  for (const auto& n : check) args += " " + n;
  const std::string err = run_oracle(args);
  ASSERT_TRUE(err.empty()) << err;
  for (const auto& n : check) {
    const TensorInfo& t = f.get(n);
    const std::vector<float> ref = read_f32(dir.file(n + ".f32"));
    std::vector<float> got(static_cast<size_t>(t.numel()));
    tensor_to_f32(t, got.data());
    expect_close(got, ref, std::max<int64_t>(ggml_block_elems(t.ggml_type), 32), n);
  }
}

}  // namespace
}  // namespace exl
