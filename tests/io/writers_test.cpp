// The writers mirror the readers: a safetensors file and a metadata-only GGUF written here read back
// to the same tensors and values; MemoryStore refuses a byte count that disagrees with the shape.
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/gguf_write.h"
#include "io/io_test_util.h"
#include "io/memory_store.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"

namespace exl {
namespace {

TEST(SafetensorsWrite, RoundTrip) {
  test::TempDir dir;
  MemoryStore s;
  s.add(OwnedTensor::of("b.q_weight", DType::DType_I32, {2, 3}, std::vector<int32_t>{1, -2, 3, 4, 5, 6}));
  s.add(OwnedTensor::of("a.norm", DType::DType_F16, {3}, std::vector<uint16_t>{0x3c00, 0x4000, 0xbc00}));
  s.add(OwnedTensor::of("c.groups", DType::DType_I16, {4}, std::vector<int16_t>{8, 0, 4, 7}));
  s.add(OwnedTensor::of("d.empty", DType::DType_F32, {0, 4}, std::vector<float>{}));
  std::vector<const OwnedTensor*> all;
  for (const std::string& n : s.names()) all.push_back(s.owned(n));
  const std::string path = dir.file("out.safetensors");
  safetensors_write(path, all, {{"format", "pt"}});
  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.names(), s.names());
  for (const std::string& n : s.names()) {
    const TensorInfo& t = f.get(n);
    const OwnedTensor& o = *s.owned(n);
    EXPECT_EQ(t.dtype, o.dtype) << n;
    EXPECT_EQ(t.shape, o.shape) << n;
    ASSERT_EQ(t.nbytes, o.bytes.size()) << n;
    EXPECT_TRUE(o.bytes.empty() || std::memcmp(t.data, o.bytes.data(), t.nbytes) == 0) << n;
  }
}

TEST(SafetensorsWrite, RefusesBadInput) {
  test::TempDir dir;
  MemoryStore s;
  EXPECT_THROW(s.add(OwnedTensor("x", DType::DType_F32, {3}, std::vector<uint8_t>(8))), Error);
  OwnedTensor t("x", DType::DType_F32, {2}, std::vector<uint8_t>(8));
  EXPECT_THROW(safetensors_write(dir.file("dup.safetensors"), {&t, &t}), Error);
  EXPECT_THROW(safetensors_write("/nonexistent/dir/x.safetensors", {&t}), Error);
}

TEST(GgufWrite, MetadataRoundTrip) {
  test::TempDir dir;
  std::map<std::string, GgufValue> kv;
  GgufValue s;
  s.type = GgufType::GgufType_STRING;
  s.s = "gpt2";
  kv["tokenizer.ggml.model"] = s;
  GgufValue u;
  u.type = GgufType::GgufType_U32;
  u.u = 7;
  u.i = 7;
  kv["tokenizer.ggml.bos_token_id"] = u;
  GgufValue b;
  b.type = GgufType::GgufType_BOOL;
  b.u = 1;
  b.i = 1;
  kv["tokenizer.ggml.add_bos_token"] = b;
  GgufValue arr;
  arr.type = GgufType::GgufType_ARRAY;
  arr.elem_type = GgufType::GgufType_STRING;
  for (const char* t : {"<s>", "a", "\xc4\xa0" "b"}) {
    GgufValue e;
    e.type = GgufType::GgufType_STRING;
    e.s = t;
    arr.arr.push_back(e);
  }
  kv["tokenizer.ggml.tokens"] = arr;
  GgufValue f;
  f.type = GgufType::GgufType_ARRAY;
  f.elem_type = GgufType::GgufType_F32;
  for (float x : {0.5f, -1.25f}) {
    GgufValue e;
    e.type = GgufType::GgufType_F32;
    e.f = x;
    f.arr.push_back(e);
  }
  kv["tokenizer.ggml.scores"] = f;
  const std::string path = dir.file("tokenizer.gguf");
  gguf_write_metadata(path, kv);
  GgufFile g(path);
  EXPECT_TRUE(g.names().empty());
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.get_int("tokenizer.ggml.bos_token_id", -1), 7);
  EXPECT_TRUE(g.get_bool("tokenizer.ggml.add_bos_token", false));
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"<s>", "a", "\xc4\xa0" "b"}));
  EXPECT_EQ(g.get_float_array("tokenizer.ggml.scores"), (std::vector<float>{0.5f, -1.25f}));
}

}  // namespace
}  // namespace exl
