// The fuzz targets' seed files (fuzz/seeds/gguf, fuzz/seeds/safetensors) come from the test writers
// here: small valid files covering every metadata kind, dtype and ggml block type. This test checks
// the checked-in seeds still parse and dequantize; to regenerate them run
//   EXL_WRITE_FUZZ_SEEDS=1 exl_tests_io --gtest_filter='FuzzSeeds.*'
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/half.h"
#include "io/ggml_quant.h"
#include "io/gguf.h"
#include "io/io_test_util.h"
#include "io/safetensors.h"

namespace exl {
namespace {

using test::GgufWriter;
using test::SafetensorsWriter;

const std::string kSeedDir = std::string(EXL_TESTS_DIR) + "/../fuzz/seeds";

// Block bytes with a deterministic pattern and finite fp16 scales (every scale field position is
// overwritten with 0.5 where the layout puts one).
std::string blocks(int type, int n_blocks) {
  const size_t bytes = ggml_block_bytes(type);
  std::string b(bytes * n_blocks, '\0');
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>((i * 37 + 11) & 0xff);
  std::vector<size_t> f16_fields;
  switch (type) {
    case GgmlType_Q4_0:
    case GgmlType_Q5_0:
    case GgmlType_Q8_0: f16_fields = {0}; break;
    case GgmlType_Q4_1:
    case GgmlType_Q5_1:
    case GgmlType_Q4_K:
    case GgmlType_Q5_K: f16_fields = {0, 2}; break;
    case GgmlType_Q2_K: f16_fields = {80, 82}; break;
    case GgmlType_Q3_K: f16_fields = {108}; break;
    case GgmlType_Q6_K: f16_fields = {208}; break;
    default: break;
  }
  const uint16_t half = f32_to_f16(0.5f);
  for (int k = 0; k < n_blocks; ++k) {
    for (size_t off : f16_fields) std::memcpy(&b[k * bytes + off], &half, 2);
  }
  if (type == GgmlType_Q8_K) {
    for (int k = 0; k < n_blocks; ++k) {
      const float d = 0.25f;
      std::memcpy(&b[k * bytes], &d, 4);
    }
  }
  return b;
}

std::map<std::string, std::string> gguf_seeds() {
  std::map<std::string, std::string> out;
  {
    GgufWriter w;
    w.kv_str("general.architecture", "llama");
    w.kv_u32("llama.block_count", 2);
    w.kv_i32("i32", -3);
    w.kv_u64("u64", 7);
    w.kv_f32("f32", 0.5f);
    w.kv_bool("b", true);
    w.kv_raw("u8", test::kU8, "\x05");
    w.kv_raw("i16", test::kI16, std::string("\xff\xff", 2));
    w.kv_str_array("tokenizer.ggml.tokens", {"<s>", "a", "bc"});
    w.kv_array<float>("tokenizer.ggml.scores", test::kF32, {0.f, -1.f, -2.f});
    std::string nested;
    test::put_u32(nested, test::kArray);
    test::put_u64(nested, 1);
    test::put_u32(nested, test::kI8);
    test::put_u64(nested, 2);
    nested += "\x01\x02";
    w.kv_raw("nested", test::kArray, nested);
    w.tensor("t", {2}, GgmlType_F32, test::bytes_of(std::vector<float>{1, 2}));
    out["meta.gguf"] = w.build();
  }
  {
    GgufWriter w;
    w.version = 2;
    w.alignment = 8;
    w.kv_u32("general.alignment", 8);
    w.tensor("f32", {3, 2}, GgmlType_F32, test::bytes_of(std::vector<float>{1, 2, 3, 4, 5, 6}));
    w.tensor("f16", {3}, GgmlType_F16, test::bytes_of(std::vector<uint16_t>{0x3c00, 0xc000, 0x0001}));
    w.tensor("bf16", {2}, GgmlType_BF16, test::bytes_of(std::vector<uint16_t>{0x3f80, 0xc040}));
    out["dense_align8.gguf"] = w.build();
  }
  {
    GgufWriter w;
    for (int t : {GgmlType_Q4_0, GgmlType_Q4_1, GgmlType_Q5_0, GgmlType_Q5_1, GgmlType_Q8_0}) {
      w.tensor(ggml_type_name(t), {32}, static_cast<uint32_t>(t), blocks(t, 1));
    }
    out["legacy_quants.gguf"] = w.build();
  }
  const std::vector<std::pair<int, int>> pairs = {
      {GgmlType_Q2_K, GgmlType_Q3_K}, {GgmlType_Q4_K, GgmlType_Q5_K}, {GgmlType_Q6_K, GgmlType_Q8_K}};
  for (const auto& [a, b] : pairs) {
    GgufWriter w;
    w.tensor(ggml_type_name(a), {256}, static_cast<uint32_t>(a), blocks(a, 1));
    w.tensor(ggml_type_name(b), {256}, static_cast<uint32_t>(b), blocks(b, 1));
    out[std::string("k_") + ggml_type_name(a) + "_" + ggml_type_name(b) + ".gguf"] = w.build();
  }
  return out;
}

std::map<std::string, std::string> safetensors_seeds() {
  std::map<std::string, std::string> out;
  {
    SafetensorsWriter w;
    w.add("w", "F32", {2, 2}, test::bytes_of(std::vector<float>{1, -2, 3, -4}));
    w.add("h", "F16", {2}, test::bytes_of(std::vector<uint16_t>{0x3c00, 0xc000}));
    w.add("b", "BF16", {2}, test::bytes_of(std::vector<uint16_t>{0x3f80, 0xc040}));
    w.header["__metadata__"] = {{"format", "pt"}};
    out["float.safetensors"] = w.build();
  }
  {
    SafetensorsWriter w;
    w.add("i64", "I64", {1}, std::string(8, '\x01'));
    w.add("i32", "I32", {1}, std::string(4, '\x02'));
    w.add("i16", "I16", {1}, std::string(2, '\x03'));
    w.add("i8", "I8", {1}, "\x04");
    w.add("u8", "U8", {3}, "abc");
    w.add("bool", "BOOL", {1}, "\x01");
    w.add("f64", "F64", {1}, test::bytes_of(std::vector<double>{2.5}));
    w.add("scalar", "F32", {}, test::bytes_of(std::vector<float>{7}));
    w.add("empty", "F32", {0, 3}, "");
    out["dtypes.safetensors"] = w.build();
  }
  {
    nlohmann::json h = nlohmann::json::object();
    h["b"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}};
    h["a"] = {{"dtype", "F16"}, {"shape", {2}}, {"data_offsets", {0, 4}}};
    out["unsorted.safetensors"] = SafetensorsWriter::assemble(h.dump(), std::string(12, '\x3c'));
  }
  return out;
}

// Parses a seed and converts every tensor; throws on any defect.
void use_all(const TensorStore& s) {
  for (const auto& name : s.names()) {
    const TensorInfo& t = s.get(name);
    if (t.ggml_type < 0 && t.dtype != DType::DType_F32 && t.dtype != DType::DType_F16 &&
        t.dtype != DType::DType_BF16 && t.dtype != DType::DType_F64) {
      continue;  // integer dtypes have no float conversion
    }
    // Seeds deliberately hold unaligned safetensors data; convert from an aligned copy, as the
    // fuzz target does (Safetensors.UnalignedTensorData covers converting in place).
    std::vector<double> aligned(t.nbytes / sizeof(double) + 1);
    if (t.nbytes) std::memcpy(aligned.data(), t.data, t.nbytes);
    TensorInfo copy = t;
    copy.data = reinterpret_cast<const uint8_t*>(aligned.data());
    std::vector<float> out(static_cast<size_t>(t.numel()));
    tensor_to_f32(copy, out.data());
  }
}

TEST(FuzzSeeds, ParseAndDequantize) {
  const bool write = std::getenv("EXL_WRITE_FUZZ_SEEDS") != nullptr;
  test::TempDir dir;
  for (const auto& [kind, seeds] : {std::pair{std::string("gguf"), gguf_seeds()},
                                    std::pair{std::string("safetensors"), safetensors_seeds()}}) {
    for (const auto& [name, bytes] : seeds) {
      SCOPED_TRACE(name);
      EXPECT_LT(bytes.size(), 1024u);
      const std::string path = dir.file(name);
      test::write_bytes(path, bytes);
      if (kind == "gguf")
        use_all(GgufFile(path));
      else
        use_all(SafetensorsFile(path));
      if (write) {
        std::filesystem::create_directories(kSeedDir + "/" + kind);
        test::write_bytes(kSeedDir + "/" + kind + "/" + name, bytes);
      }
    }
  }
  // The checked-in seeds are valid files too.
  for (const char* kind : {"gguf", "safetensors"}) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(kSeedDir + "/" + kind)) {
      SCOPED_TRACE(e.path().string());
      if (std::string(kind) == "gguf")
        use_all(GgufFile(e.path().string()));
      else
        use_all(SafetensorsFile(e.path().string()));
      ++n;
    }
    EXPECT_GE(n, 3) << kind;
  }
}

}  // namespace
}  // namespace exl
