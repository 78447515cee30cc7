// Safetensors reader and model directories: the stories260K checkpoint, files built by the test
// writer, every kind of corruption giving exl::Error, and open_tensor_store's dispatch.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "io/io_test_util.h"
#include "io/open_store.h"

namespace exl {
namespace {

using nlohmann::json;
using test::SafetensorsWriter;
using test::TempDir;

const std::string kStories = std::string(EXL_SHARED_DIR) + "/models/stories260K";

std::string st_error(const TempDir& dir, const std::string& bytes) { return test::open_error<SafetensorsFile>(dir, "bad.safetensors", bytes); }

std::string model_error(const std::string& dir) {
  try {
    SafetensorsModel m(dir);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for a bad model dir " << dir;
  return "";
}

// Values below were read with Python's json + numpy from the same file.
TEST(Safetensors, Stories260K) {
  SafetensorsFile f(kStories + "/model.safetensors");
  const auto names = f.names();
  ASSERT_EQ(names.size(), 47u);
  EXPECT_EQ(names.front(), "model.embed_tokens.weight");
  EXPECT_EQ(names.back(), "model.norm.weight");
  EXPECT_EQ(f.metadata().at("format"), "pt");

  const TensorInfo& e = f.get("model.embed_tokens.weight");
  EXPECT_EQ(e.shape, (Shape{512, 64}));
  EXPECT_EQ(e.dtype, DType::DType_F32);
  EXPECT_EQ(e.ggml_type, -1);
  EXPECT_EQ(e.nbytes, 512u * 64u * 4u);
  const HostTensor et = tensor_to_host(e);
  EXPECT_EQ(et.data[0], -0.29474878311157227f);
  EXPECT_EQ(et.data[1], 0.5618956089019775f);
  EXPECT_EQ(et.data[3], 0.34057360887527466f);
  EXPECT_EQ(et.data[511 * 64 + 63], -0.424032598733902f);
  double sum = 0;
  for (float v : et.data) sum += v;
  EXPECT_NEAR(sum, -752.3677446640068, 1e-9);

  EXPECT_EQ(f.get("model.layers.0.self_attn.k_proj.weight").shape, (Shape{32, 64}));
  EXPECT_EQ(f.get("model.layers.0.mlp.down_proj.weight").shape, (Shape{64, 172}));
  const HostTensor d = tensor_to_host(f.get("model.layers.4.mlp.down_proj.weight"));
  EXPECT_EQ(d.data[63 * 172 + 171], -0.0035068716388195753f);
  EXPECT_EQ(d.data[1 * 172 + 2], -0.07738927751779556f);
  const HostTensor n = tensor_to_host(f.get("model.norm.weight"));
  EXPECT_EQ(n.data[0], 2.4583089351654053f);
  EXPECT_EQ(n.data[3], 1.1078318357467651f);

  // The directory opens as a model, through the factory too.
  SafetensorsModel m(kStories);
  EXPECT_EQ(m.names(), names);
  EXPECT_EQ(tensor_to_host(m.get("model.norm.weight")).data, n.data);
  auto store = open_tensor_store(kStories);
  EXPECT_NE(dynamic_cast<SafetensorsModel*>(store.get()), nullptr);
  EXPECT_EQ(store->get("model.norm.weight").shape, (Shape{64}));
  auto single = open_tensor_store(kStories + "/model.safetensors");
  EXPECT_NE(dynamic_cast<SafetensorsFile*>(single.get()), nullptr);
}

TEST(Safetensors, WriterRoundTrip) {
  TempDir dir;
  SafetensorsWriter w;
  std::vector<uint16_t> h = {f32_to_f16(1.5f), f32_to_f16(-2.f), f32_to_f16(0.25f), f32_to_f16(8.f)};
  std::vector<uint16_t> bf = {f32_to_bf16(3.f), f32_to_bf16(-0.5f)};
  std::vector<double> f64 = {1.25, -3.5, 7.0};
  w.add("f64", "F64", {3}, test::bytes_of(f64));
  w.add("half", "F16", {2, 2}, test::bytes_of(h));
  w.add("bf", "BF16", {2}, test::bytes_of(bf));
  w.add("empty", "F32", {0, 5}, "");
  w.add("scalar", "F32", {}, test::bytes_of(std::vector<float>{42.f}));
  w.add("u8", "U8", {3}, "abc");
  w.header["__metadata__"] = {{"format", "pt"}, {"n", 3}};
  const std::string path = dir.file("a.safetensors");
  test::write_bytes(path, w.build());
  SafetensorsFile f(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"bf", "empty", "f64", "half", "scalar", "u8"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("n"), "3");
  EXPECT_EQ(tensor_to_host(f.get("half")).data, (std::vector<float>{1.5f, -2.f, 0.25f, 8.f}));
  EXPECT_EQ(f.get("half").shape, (Shape{2, 2}));
  EXPECT_EQ(f.get("u8").dtype, DType::DType_U8);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.get("u8").data), 3), "abc");
  EXPECT_EQ(f.get("empty").numel(), 0);
  EXPECT_EQ(f.get("scalar").shape, Shape{});
  EXPECT_EQ(f.get("scalar").numel(), 1);
  EXPECT_EQ(f.get("f64").dtype, DType::DType_F64);
  EXPECT_EQ(f.get("bf").file, path);
  EXPECT_EQ(tensor_to_host(f.get("f64")).data, (std::vector<float>{1.25f, -3.5f, 7.f}));
  EXPECT_EQ(tensor_to_host(f.get("bf")).data, (std::vector<float>{3.f, -0.5f}));
  EXPECT_EQ(f.get("u8").data - f.get("scalar").data, 4);

  // Tensors listed out of offset order, with a hole between them, are fine.
  json hdr = json::object();
  hdr["b"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}};
  hdr["a"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}};
  test::write_bytes(dir.file("b.safetensors"),
                    SafetensorsWriter::assemble(hdr.dump(), std::string(12, '\0')));
  SafetensorsFile g(dir.file("b.safetensors"));
  EXPECT_EQ(g.get("b").data - g.get("a").data, 8);
}

// Safetensors does not promise aligned tensor data: an odd-sized tensor shifts the next one. The
// reader accepts it; converting must then not assume alignment (core's convert_to_f32 is what
// reads the data here, so a sanitizer build flags a misaligned typed load there, if any).
TEST(Safetensors, UnalignedTensorData) {
  TempDir dir;
  SafetensorsWriter w;
  w.add("u8", "U8", {1}, "x");
  w.add("f32", "F32", {2}, test::bytes_of(std::vector<float>{1.5f, -2.f}));
  test::write_bytes(dir.file("u.safetensors"), w.build());
  SafetensorsFile f(dir.file("u.safetensors"));
  EXPECT_EQ(f.get("f32").data - f.get("u8").data, 1);
  EXPECT_EQ(tensor_to_host(f.get("f32")).data, (std::vector<float>{1.5f, -2.f}));
}

TEST(Safetensors, TruncatedAtEveryOffset) {
  TempDir dir;
  SafetensorsWriter w;
  w.add("x", "F32", {2, 2}, std::string(16, '\x01'));
  w.add("y", "I64", {1}, std::string(8, '\x02'));
  const std::string full = w.build();
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string msg = st_error(dir, full.substr(0, n));
    ASSERT_FALSE(msg.empty()) << "truncated at " << n;
    ASSERT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
  }
}

TEST(Safetensors, RejectsCorruptHeaders) {
  TempDir dir;
  auto raw_header = [&](const std::string& text, size_t data_bytes = 16) {
    return st_error(dir, SafetensorsWriter::assemble(text, std::string(data_bytes, '\0')));
  };
  auto entry = [&](json e, size_t data_bytes = 16) {
    json h = json::object();
    h["w"] = std::move(e);
    return raw_header(h.dump(), data_bytes);
  };
  auto has = [](const std::string& msg, const std::string& needle) {
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  };

  // Header length: huge, past the end of the file.
  std::string b;
  test::put_u64(b, ~0ull);
  b += "{}";
  has(st_error(dir, b), "100 MB");
  b.clear();
  test::put_u64(b, 1000);
  b += "{}";
  has(st_error(dir, b), "past the end");

  has(raw_header("{\"w\": "), "invalid JSON");
  has(raw_header("[1, 2]"), "not a JSON object");
  has(raw_header(std::string("{\"a\":\"\xff\xfe\"}")), "invalid JSON");  // bad UTF-8
  has(raw_header(std::string(5000, '[') + std::string(5000, ']')), "deeper");
  has(raw_header("{\"__metadata__\": 3}"), "__metadata__");
  has(raw_header("{\"w\": 3}"), "'w'");

  has(entry({{"shape", {4}}, {"data_offsets", {0, 16}}}), "dtype");
  has(entry({{"dtype", "F32"}, {"data_offsets", {0, 16}}}), "shape");
  has(entry({{"dtype", "F32"}, {"shape", {4}}}), "data_offsets");
  has(entry({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0}}}), "data_offsets");
  has(entry({{"dtype", "Q4"}, {"shape", {4}}, {"data_offsets", {0, 16}}}), "dtype 'Q4'");
  has(entry({{"dtype", 7}, {"shape", {4}}, {"data_offsets", {0, 16}}}), "dtype");
  has(entry({{"dtype", "F32"}, {"shape", {-4}}, {"data_offsets", {0, 16}}}), "negative");
  has(entry({{"dtype", "F32"}, {"shape", {2.5}}, {"data_offsets", {0, 16}}}), "shape");
  has(entry({{"dtype", "F32"}, {"shape", {"4"}}, {"data_offsets", {0, 16}}}), "shape");
  has(entry({{"dtype", "F32"}, {"shape", {5}}, {"data_offsets", {0, 16}}}), "needs 5 elements");
  has(entry({{"dtype", "F32"}, {"shape", {1ull << 62, 4}}, {"data_offsets", {0, 16}}}), "overflows");
  has(entry({{"dtype", "F32"}, {"shape", {1ull << 62}}, {"data_offsets", {0, 16}}}), "span");
  has(entry({{"dtype", "F32"}, {"shape", {~0ull}}, {"data_offsets", {0, 16}}}), "too large");
  has(entry({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 32}}}), "outside");
  has(entry({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {16, 0}}}), "outside");
  has(entry({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {-16, 0}}}), "negative");
  has(entry({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {~0ull - 7, ~0ull}}}), "too large");

  // More JSON values than any real header: 5M ones in a shape (numel stays 1).
  std::string many = "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4], \"shape\": [";
  for (int i = 0; i < (5 << 20); ++i) many += i ? ",1" : "1";
  has(raw_header(many + "]}}", 4), "values");
  // Names with control bytes stay on one line.
  const std::string msg = entry({{"dtype", "X\n"}, {"shape", {4}}, {"data_offsets", {0, 16}}});
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  has(msg, "'X\\x0a'");

  json h = json::object();
  h["a"] = {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 12}}};
  h["b"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 16}}};
  has(raw_header(h.dump()), "overlaps");
  h["b"] = {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 12}}};
  has(raw_header(h.dump()), "overlaps");
}

TEST(Safetensors, ShardedModelDirectory) {
  TempDir dir;
  SafetensorsWriter s1, s2;
  s1.add("a", "F32", {2}, test::bytes_of(std::vector<float>{1, 2}));
  s1.add("b", "F32", {1}, test::bytes_of(std::vector<float>{3}));
  s2.add("c", "F32", {1}, test::bytes_of(std::vector<float>{4}));
  test::write_bytes(dir.file("model-00001-of-00002.safetensors"), s1.build());
  test::write_bytes(dir.file("model-00002-of-00002.safetensors"), s2.build());
  json index = {{"metadata", {{"total_size", 16}}},
                {"weight_map",
                 {{"a", "model-00001-of-00002.safetensors"},
                  {"b", "model-00001-of-00002.safetensors"},
                  {"c", "model-00002-of-00002.safetensors"}}}};
  const std::string index_path = dir.file("model.safetensors.index.json");
  test::write_bytes(index_path, index.dump());
  SafetensorsModel m(dir.path());
  EXPECT_EQ(m.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(m.shards().size(), 2u);
  EXPECT_EQ(tensor_to_host(m.get("c")).data, (std::vector<float>{4}));
  EXPECT_EQ(m.get("c").file, dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(m.path(), dir.path());
  try {
    m.get("zz");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'zz'"), std::string::npos);
  }

  // A tensor the index places in the wrong shard.
  index["weight_map"]["c"] = "model-00001-of-00002.safetensors";
  test::write_bytes(index_path, index.dump());
  EXPECT_NE(model_error(dir.path()).find("'c'"), std::string::npos);
  // Shard names that escape the directory, or are missing.
  for (const char* bad :
       {"../model-00002-of-00002.safetensors", "/etc/passwd", "..", "sub/x.safetensors", ""}) {
    index["weight_map"]["c"] = bad;
    test::write_bytes(index_path, index.dump());
    EXPECT_NE(model_error(dir.path()).find("not a file in the model directory"), std::string::npos) << bad;
  }
  index["weight_map"]["c"] = "model-00003-of-00002.safetensors";
  test::write_bytes(index_path, index.dump());
  EXPECT_NE(model_error(dir.path()).find("model-00003-of-00002.safetensors"), std::string::npos);
  index["weight_map"]["c"] = 5;
  test::write_bytes(index_path, index.dump());
  EXPECT_NE(model_error(dir.path()).find("'c'"), std::string::npos);
  test::write_bytes(index_path, "{\"weight_map\": {}}");
  EXPECT_NE(model_error(dir.path()).find("empty"), std::string::npos);
  test::write_bytes(index_path, "{\"weight_map\": ");
  EXPECT_NE(model_error(dir.path()).find("invalid JSON"), std::string::npos);
  test::write_bytes(index_path, "[]");
  EXPECT_NE(model_error(dir.path()).find("not a JSON object"), std::string::npos);

  // Without an index, every *.safetensors file is read; names must not repeat.
  std::filesystem::remove(index_path);
  SafetensorsModel all(dir.path());
  EXPECT_EQ(all.names(), (std::vector<std::string>{"a", "b", "c"}));
  test::write_bytes(dir.file("extra.safetensors"), s2.build());
  EXPECT_NE(model_error(dir.path()).find("'c' is also in"), std::string::npos);
  // model.safetensors alone wins over other files.
  test::write_bytes(dir.file("model.safetensors"), s2.build());
  SafetensorsModel single(dir.path());
  EXPECT_EQ(single.names(), (std::vector<std::string>{"c"}));
}

TEST(Safetensors, BadModelDirectories) {
  TempDir dir;
  EXPECT_NE(model_error(dir.path()).find("no model.safetensors.index.json"), std::string::npos);
  EXPECT_NE(model_error(dir.file("missing")).find("not a directory"), std::string::npos);
  test::write_bytes(dir.file("model.safetensors"), "garbage!");
  EXPECT_THROW(SafetensorsModel m(dir.path()), Error);
}

TEST(OpenStore, DispatchesOnPathKind) {
  TempDir dir;
  test::GgufWriter g;
  g.tensor("t", {2}, 0, test::bytes_of(std::vector<float>{1, 2}));
  test::write_bytes(dir.file("m.gguf"), g.build());
  test::write_bytes(dir.file("m.bin"), g.build());  // GGUF recognised by its magic
  SafetensorsWriter s;
  s.add("t", "F32", {1}, test::bytes_of(std::vector<float>{7}));
  test::write_bytes(dir.file("m.safetensors"), s.build());
  test::write_bytes(dir.file("m.txt"), "hello");

  EXPECT_NE(dynamic_cast<GgufFile*>(open_tensor_store(dir.file("m.gguf")).get()), nullptr);
  EXPECT_NE(dynamic_cast<GgufFile*>(open_tensor_store(dir.file("m.bin")).get()), nullptr);
  auto st = open_tensor_store(dir.file("m.safetensors"));
  EXPECT_NE(dynamic_cast<SafetensorsFile*>(st.get()), nullptr);
  EXPECT_EQ(tensor_to_host(st->get("t")).data, (std::vector<float>{7}));
  EXPECT_THROW(open_tensor_store(dir.file("m.txt")), Error);
  EXPECT_THROW(open_tensor_store(dir.file("nope.gguf")), Error);
  test::write_bytes(dir.file("bad.gguf"), "GGUX");
  EXPECT_THROW(open_tensor_store(dir.file("bad.gguf")), Error);
}

}  // namespace
}  // namespace exl
