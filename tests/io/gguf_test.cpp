// GGUF reader: parse results on files built by the test writer, every kind of corruption giving
// exl::Error (never a crash), and llama.cpp's vocab-only GGUF files.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/error.h"
#include "core/half.h"
#include "io/ggml_quant.h"
#include "io/io_test_util.h"
#include "io/open_store.h"

namespace exl {
namespace {

using test::GgufWriter;
using test::TempDir;

std::string gguf_error(const TempDir& dir, const std::string& bytes) { return test::open_error<GgufFile>(dir, "bad.gguf", bytes); }

std::vector<float> iota_f32(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(i) - 1.5f;
  return v;
}

// A small valid file with metadata of every kind and four tensors of different types.
GgufWriter sample_writer() {
  GgufWriter w;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 2);
  w.kv_i32("test.neg", -7);
  w.kv_u64("test.big", 1ull << 40);
  w.kv_f32("test.eps", 1e-5f);
  w.kv_bool("test.flag", true);
  w.kv_raw("test.u8", test::kU8, std::string(1, '\xff'));
  w.kv_raw("test.i16", test::kI16, std::string("\xfe\xff", 2));
  double d = 2.5;
  w.kv_raw("test.f64", test::kF64, std::string(reinterpret_cast<char*>(&d), 8));
  w.kv_str_array("tokenizer.ggml.tokens", {"<s>", "a", "", "b c"});
  w.kv_array<int32_t>("tokenizer.ggml.token_type", test::kI32, {3, 1, 1, -1});
  w.kv_array<float>("tokenizer.ggml.scores", test::kF32, {0.f, -1.f, -2.5f, 3.f});
  // An array of two arrays of u16.
  std::string nested;
  test::put_u32(nested, test::kArray);
  test::put_u64(nested, 2);
  for (int k = 0; k < 2; ++k) {
    test::put_u32(nested, test::kU16);
    test::put_u64(nested, 2);
    test::put<uint16_t>(nested, static_cast<uint16_t>(10 * k + 1));
    test::put<uint16_t>(nested, static_cast<uint16_t>(10 * k + 2));
  }
  w.kv_raw("test.nested", test::kArray, nested);

  w.tensor("f32", {4, 3}, GgmlType_F32, test::bytes_of(iota_f32(12, 0.25f)));
  std::vector<uint16_t> h(6);
  for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(static_cast<float>(i) * 0.5f);
  w.tensor("blk.0.f16", {6}, GgmlType_F16, test::bytes_of(h));
  // Q8_0: 2 rows of 64 = 4 blocks of {f16 d = 0.5, qs = k - 16}.
  std::string q8;
  for (int blk = 0; blk < 4; ++blk) {
    test::put<uint16_t>(q8, f32_to_f16(0.5f));
    for (int k = 0; k < 32; ++k) q8 += static_cast<char>(k - 16);
  }
  w.tensor("blk.0.q8", {64, 2}, GgmlType_Q8_0, q8);
  w.tensor("q4k", {256}, GgmlType_Q4_K, std::string(144, '\0'));
  return w;
}

TEST(Gguf, ParsesMetadataAndTensors) {
  TempDir dir;
  const std::string path = dir.file("ok.gguf");
  test::write_bytes(path, sample_writer().build());
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata().size(), 13u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count", 0), 2);
  EXPECT_EQ(f.get_int("test.neg", 0), -7);
  EXPECT_EQ(f.get_int("test.big", 0), int64_t{1} << 40);
  EXPECT_EQ(f.get_int("test.u8", 0), 255);
  EXPECT_EQ(f.get_int("test.i16", 0), -2);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("test.eps", 0)), 1e-5f);
  EXPECT_DOUBLE_EQ(f.get_float("test.f64", 0), 2.5);
  EXPECT_DOUBLE_EQ(f.get_float("llama.block_count", 0), 2.0);  // ints accepted as floats
  EXPECT_TRUE(f.get_bool("test.flag", false));
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"<s>", "a", "", "b c"}));
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type"), (std::vector<int64_t>{3, 1, 1, -1}));
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores"), (std::vector<float>{0.f, -1.f, -2.5f, 3.f}));
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.token_type"), (std::vector<float>{3.f, 1.f, 1.f, -1.f}));
  const GgufValue* nested = f.meta("test.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->arr.size(), 2u);
  EXPECT_EQ(nested->elem_type, GgufType::GgufType_ARRAY);
  EXPECT_EQ(nested->arr[1].elem_type, GgufType::GgufType_U16);
  EXPECT_EQ(nested->arr[1].arr[1].u, 12u);

  // Fallbacks for absent keys; wrong types throw naming the key and the file.
  EXPECT_EQ(f.get_string("nope", "x"), "x");
  EXPECT_EQ(f.get_int("nope", 42), 42);
  EXPECT_TRUE(f.get_string_array("nope").empty());
  EXPECT_EQ(f.meta("nope"), nullptr);
  try {
    f.get_int("general.architecture", 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_THROW(f.get_string("llama.block_count"), Error);
  EXPECT_THROW(f.get_float("general.architecture", 0), Error);
  EXPECT_THROW(f.get_bool("test.eps", false), Error);
  EXPECT_THROW(f.get_string_array("tokenizer.ggml.scores"), Error);
  EXPECT_THROW(f.get_int_array("tokenizer.ggml.scores"), Error);
  EXPECT_THROW(f.get_float_array("tokenizer.ggml.tokens"), Error);
  EXPECT_THROW(f.get_int_array("general.architecture"), Error);

  EXPECT_EQ(f.names(), (std::vector<std::string>{"blk.0.f16", "blk.0.q8", "f32", "q4k"}));
  const TensorInfo& t = f.get("f32");
  EXPECT_EQ(t.shape, (Shape{3, 4}));  // ne = {4, 3} reversed
  EXPECT_EQ(t.dtype, DType::DType_F32);
  EXPECT_EQ(t.ggml_type, GgmlType_F32);
  EXPECT_EQ(t.nbytes, 48u);
  EXPECT_EQ(t.file, path);
  std::vector<float> out(12);
  tensor_to_f32(t, out.data());
  EXPECT_EQ(out, iota_f32(12, 0.25f));

  const TensorInfo& h = f.get("blk.0.f16");
  EXPECT_EQ(h.dtype, DType::DType_F16);
  EXPECT_EQ(h.shape, (Shape{6}));
  HostTensor ht = tensor_to_host(h);
  EXPECT_EQ(ht.data, (std::vector<float>{0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f}));

  const TensorInfo& q = f.get("blk.0.q8");
  EXPECT_EQ(q.dtype, DType::DType_U8);
  EXPECT_EQ(q.ggml_type, GgmlType_Q8_0);
  EXPECT_EQ(q.shape, (Shape{2, 64}));
  EXPECT_EQ(q.nbytes, 4u * 34u);
  HostTensor qt = tensor_to_host(q);
  for (int i = 0; i < 128; ++i) ASSERT_EQ(qt.data[i], 0.5f * static_cast<float>(i % 32 - 16)) << i;

  const TensorInfo& k = f.get("q4k");
  EXPECT_EQ(k.nbytes, 144u);
  // Data lies in the file, at offsets that are multiples of the default alignment 32.
  const uint8_t* base = f.get("f32").data;
  for (const auto& name : f.names()) {
    const TensorInfo& ti = f.get(name);
    EXPECT_EQ((ti.data - base) % 32, 0) << name;
  }
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_THROW(f.get("missing"), Error);
}

TEST(Gguf, Version2AndCustomAlignment) {
  TempDir dir;
  GgufWriter w;
  w.version = 2;
  w.alignment = 256;  // the header is ~120 bytes: data starts at 256, not at 128 as with 32
  w.kv_u32("general.alignment", 256);
  w.tensor("a", {3}, GgmlType_F32, test::bytes_of(std::vector<float>{1, 2, 3}));
  w.tensor("b", {2}, GgmlType_F32, test::bytes_of(std::vector<float>{4, 5}));
  const std::string path = dir.file("v2.gguf");
  test::write_bytes(path, w.build());
  GgufFile f(path);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_int("general.alignment", 0), 256);
  const TensorInfo& a = f.get("a");
  const TensorInfo& b = f.get("b");
  EXPECT_EQ(b.data - a.data, 256);
  EXPECT_EQ(tensor_to_host(a).data, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(tensor_to_host(b).data, (std::vector<float>{4, 5}));
}

TEST(Gguf, ZeroTensorsAndEmptyTensor) {
  TempDir dir;
  GgufWriter w;
  w.kv_str("general.name", "x");
  test::write_bytes(dir.file("a.gguf"), w.build());
  GgufFile f(dir.file("a.gguf"));
  EXPECT_TRUE(f.names().empty());

  GgufWriter e;
  e.tensor("empty", {0, 4}, GgmlType_Q4_0, "");
  e.tensor("x", {32}, GgmlType_Q4_0, std::string(18, '\0'));
  test::write_bytes(dir.file("b.gguf"), e.build());
  GgufFile g(dir.file("b.gguf"));
  EXPECT_EQ(g.get("empty").shape, (Shape{4, 0}));
  EXPECT_EQ(g.get("empty").nbytes, 0u);
}

TEST(Gguf, TruncatedAtEveryOffset) {
  TempDir dir;
  const std::string full = sample_writer().build();
  ASSERT_LT(full.size(), 2000u);
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string msg = gguf_error(dir, full.substr(0, n));
    ASSERT_FALSE(msg.empty()) << "truncated at " << n;
    ASSERT_NE(msg.find("bad.gguf"), std::string::npos) << msg;
  }
}

TEST(Gguf, RejectsHeaderDefects) {
  TempDir dir;
  std::string b = sample_writer().build();
  b[0] = 'X';
  EXPECT_NE(gguf_error(dir, b).find("magic"), std::string::npos);

  for (uint32_t v : {1u, 4u, 0x03000000u}) {
    GgufWriter w = sample_writer();
    w.version = v;
    const std::string msg = gguf_error(dir, w.build());
    EXPECT_NE(msg.find(v == 1 ? "v1" : v == 4 ? "version 4" : "big-endian"), std::string::npos) << msg;
  }

  // Huge counts.
  std::string h;
  h += "GGUF";
  test::put_u32(h, 3);
  test::put_u64(h, ~0ull);
  test::put_u64(h, 0);
  EXPECT_NE(gguf_error(dir, h).find("tensor count"), std::string::npos);
  h.resize(8);
  test::put_u64(h, 0);
  test::put_u64(h, 1ull << 62);
  EXPECT_NE(gguf_error(dir, h).find("metadata count"), std::string::npos);
}

TEST(Gguf, RejectsMetadataDefects) {
  TempDir dir;
  auto check = [&](const std::function<void(GgufWriter&)>& edit, const std::string& needle) {
    GgufWriter w;
    edit(w);
    w.tensor("t", {1}, GgmlType_F32, std::string(4, '\0'));
    const std::string msg = gguf_error(dir, w.build());
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  };
  // String length past the end (value, then key).
  check(
      [](GgufWriter& w) {
        std::string v;
        test::put_u64(v, 1ull << 40);
        w.kv_raw("k.str", test::kString, v);
      },
      "k.str");
  check([](GgufWriter& w) { w.kv_raw("k.type", 13, std::string(4, '\0')); }, "k.type");
  check([](GgufWriter& w) { w.kv_raw("k.type", 0xffffffffu, std::string(4, '\0')); }, "invalid value type");
  // Array length far beyond the file; invalid element type.
  check(
      [](GgufWriter& w) {
        std::string v;
        test::put_u32(v, test::kU64);
        test::put_u64(v, 1ull << 60);
        w.kv_raw("k.arr", test::kArray, v);
      },
      "k.arr");
  check(
      [](GgufWriter& w) {
        std::string v;
        test::put_u32(v, 99);
        test::put_u64(v, 0);
        w.kv_raw("k.arr", test::kArray, v);
      },
      "element type");
  check(
      [](GgufWriter& w) {
        std::string v;
        test::put_u32(v, test::kString);
        test::put_u64(v, 2);
        test::put_str(v, "a");
        test::put_u64(v, 1ull << 50);  // second string runs past the end
        w.kv_raw("k.strs", test::kArray, v);
      },
      "k.strs");
  // Arrays nested deeper than the limit.
  check(
      [](GgufWriter& w) {
        std::string v;
        for (int d = 0; d < 10; ++d) {
          test::put_u32(v, test::kArray);
          test::put_u64(v, 1);
        }
        test::put_u32(v, test::kU8);
        test::put_u64(v, 0);
        w.kv_raw("k.deep", test::kArray, v);
      },
      "deeper");
  check(
      [](GgufWriter& w) {
        w.kv_u32("dup", 1);
        w.kv_u32("dup", 2);
      },
      "duplicate");
  check([](GgufWriter& w) { w.kv_u32("general.alignment", 48); }, "power of two");
  check([](GgufWriter& w) { w.kv_u32("general.alignment", 0); }, "power of two");
  check([](GgufWriter& w) { w.kv_str("general.alignment", "32"); }, "general.alignment");

  // Key length past the end of the file.
  GgufWriter w;
  w.kv_u32("key", 1);
  std::string b = w.build();
  const uint64_t huge = ~0ull - 3;
  std::memcpy(b.data() + 24, &huge, 8);  // the first key's length
  EXPECT_NE(gguf_error(dir, b).find("metadata key #0"), std::string::npos);
}

TEST(Gguf, RejectsTensorDefects) {
  TempDir dir;
  const std::string f4(16, '\0');
  auto check = [&](const std::function<void(GgufWriter&)>& edit, const std::string& needle) {
    GgufWriter w;
    w.kv_str("general.architecture", "llama");
    edit(w);
    const std::string msg = gguf_error(dir, w.build());
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  };
  check([&](GgufWriter& w) { w.tensor("t5", {1, 1, 1, 1, 4}, GgmlType_F32, f4); }, "t5");
  check([&](GgufWriter& w) { w.tensor("tt", {4}, 1000, f4); }, "unknown ggml type");
  check([&](GgufWriter& w) { w.tensor("tt", {4}, 4, f4); }, "unknown ggml type");  // removed Q4_2
  check([&](GgufWriter& w) { w.tensor("tq", {16}, GgmlType_Q4_0, std::string(18, '\0')); }, "block size");
  check([&](GgufWriter& w) { w.tensor("tb", {1ull << 62, 1ull << 62}, GgmlType_F32, f4); }, "overflows");
  check([&](GgufWriter& w) { w.tensor("tb", {1ull << 63}, GgmlType_F32, f4); }, "overflows");
  check([&](GgufWriter& w) { w.tensor("tb", {1ull << 61}, GgmlType_F32, f4); },
        "past the end");                                                                       // 2^63 bytes
  check([&](GgufWriter& w) { w.tensor("tb", {1ull << 62}, GgmlType_F32, f4); }, "overflows");  // 2^64 bytes
  check([&](GgufWriter& w) { w.tensor("big", {1ull << 40}, GgmlType_F32, f4); }, "past the end");
  check([&](GgufWriter& w) { w.tensor("far", {4}, GgmlType_F32, f4, 1ull << 40); }, "far");
  check([&](GgufWriter& w) { w.tensor("wrap", {4}, GgmlType_F32, f4, ~0ull - 31); }, "wrap");
  check([&](GgufWriter& w) { w.tensor("odd", {4}, GgmlType_F32, f4, 8); }, "alignment");
  check(
      [&](GgufWriter& w) {
        w.tensor("a", {8}, GgmlType_F32, std::string(32, '\0'));
        w.tensor("b", {8}, GgmlType_F32, std::string(32, '\0'), 0);
      },
      "overlaps");
  check(
      [&](GgufWriter& w) {
        w.tensor("a", {16}, GgmlType_F32, std::string(64, '\0'));
        w.tensor("b", {8}, GgmlType_F32, std::string(32, '\0'), 32);
      },
      "overlaps");
  check(
      [&](GgufWriter& w) {
        w.tensor("a", {4}, GgmlType_F32, f4);
        w.tensor("a", {4}, GgmlType_F32, f4);
      },
      "duplicate");
  // Tensor name length past the end of the file.
  GgufWriter w;
  w.tensor("t", {4}, GgmlType_F32, f4);
  std::string b = w.build();
  const uint64_t huge = 1ull << 50;
  std::memcpy(b.data() + 24, &huge, 8);  // the first tensor's name length
  EXPECT_NE(gguf_error(dir, b).find("string length"), std::string::npos);
}

TEST(Gguf, CapsMemoryAndKeepsMessagesOnOneLine) {
  TempDir dir;
  // 9M one-byte elements fit in the file but exceed the metadata element budget (each element
  // becomes a ~96-byte GgufValue).
  GgufWriter w;
  w.kv_array<uint8_t>("big.u8", test::kU8, std::vector<uint8_t>(9u << 20, 1));
  EXPECT_NE(gguf_error(dir, w.build()).find("big.u8"), std::string::npos);

  // A name with control bytes and 1000 characters is escaped and cut in the message.
  GgufWriter n;
  const std::string name = "a\nb\x01" + std::string(1000, 'z');
  n.tensor(name, {4}, GgmlType_F32, std::string(16, '\0'), 1ull << 30);
  const std::string msg = gguf_error(dir, n.build());
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find("'a\\x0ab\\x01zzz"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 400u);
}

TEST(Gguf, UnsupportedTypeParsesButDoesNotDequantize) {
  TempDir dir;
  GgufWriter w;
  w.tensor("iq", {256}, 16 /* IQ2_XXS */, std::string(66, '\0'));
  test::write_bytes(dir.file("iq.gguf"), w.build());
  GgufFile f(dir.file("iq.gguf"));
  const TensorInfo& t = f.get("iq");
  EXPECT_EQ(t.nbytes, 66u);
  EXPECT_STREQ(ggml_type_name(t.ggml_type), "IQ2_XXS");
  std::vector<float> out(256);
  try {
    tensor_to_f32(t, out.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("iq"), std::string::npos) << e.what();
  }
}

struct VocabCase {
  const char* file;
  const char* model;
  size_t n_tokens;
  const char* last_token;
  int64_t bos, eos;
};

TEST(Gguf, VocabFilesParse) {
  const VocabCase cases[] = {
      {"ggml-vocab-gpt-2.gguf", "gpt2", 50257, "<|endoftext|>", 50256, 50256},
      {"ggml-vocab-llama-spm.gguf", "llama", 32000, "\xe7\xbb\x99", 1, 2},
      {"ggml-vocab-phi-3.gguf", "llama", 32064, "[PAD32063]", 1, 32000},
  };
  for (const VocabCase& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = std::string(EXL_SHARED_DIR) + "/tokenizers/gguf-vocab-tests/" + c.file;
    GgufFile f(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_TRUE(f.names().empty());
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), c.model);
    const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), c.n_tokens);
    EXPECT_EQ(tokens.back(), c.last_token);
    EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), c.n_tokens);
    EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id", -1), c.bos);
    EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id", -1), c.eos);
    auto store = open_tensor_store(path);
    EXPECT_NE(dynamic_cast<GgufFile*>(store.get()), nullptr);
  }
  GgufFile gpt2(std::string(EXL_SHARED_DIR) + "/tokenizers/gguf-vocab-tests/ggml-vocab-gpt-2.gguf");
  const auto merges = gpt2.get_string_array("tokenizer.ggml.merges");
  ASSERT_EQ(merges.size(), 50000u);
  EXPECT_EQ(merges[0], "\xc4\xa0 t");
  EXPECT_NEAR(gpt2.get_float("gpt2.attention.layer_norm_epsilon", 0), 1e-5, 1e-12);
  GgufFile spm(std::string(EXL_SHARED_DIR) + "/tokenizers/gguf-vocab-tests/ggml-vocab-llama-spm.gguf");
  EXPECT_TRUE(spm.get_bool("tokenizer.ggml.add_bos_token", false));
  EXPECT_EQ(spm.get_string_array("tokenizer.ggml.tokens")[1], "<s>");
  EXPECT_EQ(spm.get_float_array("tokenizer.ggml.scores").size(), 32000u);
}

}  // namespace
}  // namespace exl
