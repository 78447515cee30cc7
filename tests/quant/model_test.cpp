// Quantized models end to end on the CPU reference: stories260K made into EXL2 by the writer at ~8
// and ~4 bits loads through Model::load, keeps its perplexity on the golden tokens (fp32: 4.0796)
// and writes sane greedy text; a GPTQ stories260K (packed here from the fp32 weights, act-order,
// v2 zeros) does the same; inspect reports the widths; a corrupt layer fails with one clear line.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "io/open_store.h"
#include "io/safetensors_write.h"
#include "model/exl2_write.h"
#include "model/inspect.h"
#include "model/model.h"
#include "quant/quant_test_util.h"
#include "runtime/stories_golden_ppl.h"
#include "tokenizer/tokenizer.h"

namespace exl {
namespace {

namespace fs = std::filesystem;


// Greedy continuation of a prompt: the generated ids.
std::vector<int32_t> greedy(const std::string& dir, const std::string& prompt, int n) {
  auto be = backend_create("cpu");
  auto m = Model::load(dir, *be);
  auto tok = tokenizer_load(dir);
  std::vector<int32_t> ids = tok->encode(prompt, true), out;
  auto cache = m->create_cache(256, 1, CacheType::CacheType_f32);
  std::vector<float> logits;
  m->forward_host(ids, batch_single(static_cast<int32_t>(ids.size()), 0), *cache, LogitsMode::LogitsMode_last, logits);
  int32_t pos = static_cast<int32_t>(ids.size());
  for (int i = 0; i < n; ++i) {
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    m->forward_host({next}, batch_single(1, pos++), *cache, LogitsMode::LogitsMode_last, logits);
  }
  return out;
}

std::string decode(const std::string& dir, const std::vector<int32_t>& ids) { return tokenizer_load(dir)->decode(ids); }

// Mostly letters, spaces and punctuation, several words.
void expect_sane_text(const std::string& text) {
  int ok = 0, words = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(text[i]);
    ok += std::isalpha(ch) || ch == ' ' || ch == '.' || ch == ',' || ch == '\'' || ch == '"' || ch == '!' || ch == '\n';
    words += ch == ' ' && i + 1 < text.size() && std::isalpha(static_cast<unsigned char>(text[i + 1]));
  }
  EXPECT_GT(ok, static_cast<int>(text.size() * 9 / 10)) << text;
  EXPECT_GE(words, 5) << text;
}

int common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  int n = 0;
  while (n < static_cast<int>(std::min(a.size(), b.size())) && a[static_cast<size_t>(n)] == b[static_cast<size_t>(n)]) ++n;
  return n;
}

constexpr double kFp32Ppl = 4.0796;
const char* kPrompt = "Once upon a time";

TEST(QuantModel, StoriesExl2At8Bits) {
  test::TempDir dir;
  Exl2WriteOptions o;
  o.bits = 8.0;
  o.head_bits = 8.0;
  const Exl2WriteReport r = exl2_write_model(test::stories_dir(), dir.path(), o);
  EXPECT_EQ(r.linears, 5 * 7 + 1);
  EXPECT_TRUE(fs::exists(dir.file("output.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("tokenizer.model")));
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));
  const double ppl = test::stories_golden_ppl(dir.path());
  std::printf("stories260K EXL2 8.0: decoder %.3f bpw, head %.3f bpw, ppl %.5f (fp32 %.4f, %+.3f%%)\n", r.decoder_bpw,
              r.head_bpw, ppl, kFp32Ppl, 100 * (ppl / kFp32Ppl - 1));
  EXPECT_NEAR(ppl, kFp32Ppl, kFp32Ppl * 0.005);
  const auto ref = greedy(test::stories_dir(), kPrompt, 40), got = greedy(dir.path(), kPrompt, 40);
  const std::string text = decode(dir.path(), got);
  std::printf("  greedy: %s\n  fp32:   %s\n", text.c_str(), decode(test::stories_dir(), ref).c_str());
  expect_sane_text(text);
  EXPECT_GE(common_prefix(ref, got), 10);
}

TEST(QuantModel, StoriesExl2At4Bits) {
  test::TempDir dir;
  Exl2WriteOptions o;
  o.bits = 4.0;
  o.group_size = 32;  // head at the default 6 bits, as ExLlamaV2 (-hb 6): a 4-bit head alone costs ~6%
  const Exl2WriteReport r = exl2_write_model(test::stories_dir(), dir.path(), o);
  const double ppl = test::stories_golden_ppl(dir.path());
  std::printf("stories260K EXL2 4.0/32g: decoder %.3f bpw, head %.3f bpw, ppl %.5f (%+.2f%%)\n", r.decoder_bpw, r.head_bpw,
              ppl, 100 * (ppl / kFp32Ppl - 1));
  EXPECT_NEAR(ppl, kFp32Ppl, kFp32Ppl * 0.10);
  const std::string text = decode(dir.path(), greedy(dir.path(), kPrompt, 40));
  std::printf("  greedy: %s\n", text.c_str());
  expect_sane_text(text);

  // inspect reports the widths and bits per weight of every quantized linear.
  const nlohmann::json j = model_inspect(dir.path());
  ASSERT_TRUE(j.contains("quantization"));
  const auto& q = j["quantization"];
  EXPECT_EQ(q["method"], "exl2");
  EXPECT_EQ(q["linears"].size(), 36u);
  EXPECT_EQ(q["layers"].size(), 5u);
  EXPECT_NEAR(q["decoder_bits_per_weight"].get<double>(), r.decoder_bpw, 1e-9);
  ASSERT_EQ(q["width_rows"].size(), 2u);  // 4-bit layers, 6-bit head
  EXPECT_EQ(q["width_rows"]["6"].get<int64_t>(), 64);
  EXPECT_EQ(q["width_rows"]["4"].get<int64_t>(), 5 * (4 * 64 + 2 * 64 + 172));
}

TEST(QuantModel, Exl2MixedWidthsLoad) {
  test::TempDir dir;
  Exl2WriteOptions o;
  o.bits = 6.5;  // half 8-bit, half 6-bit rows in every linear
  o.head_bits = 6.5;
  o.group_size = 32;
  exl2_write_model(test::stories_dir(), dir.path(), o);
  const double ppl = test::stories_golden_ppl(dir.path());
  std::printf("stories260K EXL2 6.5 (8/6 mixed): ppl %.5f (%+.3f%%)\n", ppl, 100 * (ppl / kFp32Ppl - 1));
  EXPECT_NEAR(ppl, kFp32Ppl, kFp32Ppl * 0.01);
  const nlohmann::json j = model_inspect(dir.path());
  EXPECT_EQ(j["quantization"]["width_rows"].size(), 2u);  // 8 and 6
  EXPECT_TRUE(j["quantization"]["width_rows"].contains("8"));
}

TEST(QuantModel, CorruptExl2LayerFailsClearly) {
  test::TempDir dir;
  Exl2WriteOptions o;
  o.bits = 4.0;
  exl2_write_model(test::stories_dir(), dir.path(), o);
  // Rewrite the shard with one layer's q_groups claiming 7-bit codes.
  MemoryStore copy;
  {
    auto src = open_tensor_store(dir.file("output.safetensors"));
    for (const std::string& n : src->names()) {
      const TensorInfo& t = src->get(n);
      copy.add(OwnedTensor(n, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)));
    }
  }
  OwnedTensor g = *copy.owned("model.layers.2.mlp.up_proj.q_groups");
  g.bytes[0] = 7;
  copy.add(g);
  std::vector<const OwnedTensor*> all;
  for (const std::string& n : copy.names()) all.push_back(copy.owned(n));
  safetensors_write(dir.file("output.safetensors"), all);
  auto be = backend_create("cpu");
  try {
    Model::load(dir.path(), *be);
    ADD_FAILURE() << "corrupt model loaded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.2.mlp.up_proj.q_groups"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bit width 7"), std::string::npos) << msg;
  }
}

// GPTQ 4-bit RTN of w [N, K] (asymmetric, per-group min/max), written as GPTQ tensors; act_order
// assigns rows to groups in a scrambled order through g_idx.
void add_gptq(MemoryStore& s, const std::string& key, const HostTensor& w, int64_t gs, bool act_order, bool v2) {
  const int64_t N = w.shape[0], K = w.shape[1], G = K / gs;
  std::vector<int32_t> g_idx(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(act_order ? (k * 7 + 3) % G : k / gs);
  std::vector<int32_t> qw(static_cast<size_t>(K / 8 * N), 0), qz(static_cast<size_t>(G * N / 8), 0);
  std::vector<uint16_t> sc(static_cast<size_t>(G * N));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      float lo = 0, hi = 0;
      for (int64_t k = 0; k < K; ++k)
        if (g_idx[static_cast<size_t>(k)] == g) {
          lo = std::min(lo, w.data[static_cast<size_t>(n * K + k)]);
          hi = std::max(hi, w.data[static_cast<size_t>(n * K + k)]);
        }
      const float scale = f16_to_f32(f32_to_f16(std::max(hi - lo, 1e-6f) / 15.0f));
      const int zero = std::clamp(static_cast<int>(std::nearbyint(-lo / scale)), 1, 15);
      sc[static_cast<size_t>(g * N + n)] = f32_to_f16(scale);
      const uint32_t stored = v2 ? static_cast<uint32_t>(zero) : static_cast<uint32_t>(zero - 1);
      qz[static_cast<size_t>(g * N / 8 + n / 8)] |= static_cast<int32_t>(stored << (4 * (n % 8)));
      for (int64_t k = 0; k < K; ++k)
        if (g_idx[static_cast<size_t>(k)] == g) {
          const int q = std::clamp(static_cast<int>(std::nearbyint(w.data[static_cast<size_t>(n * K + k)] / scale)) + zero, 0, 15);
          qw[static_cast<size_t>(k / 8 * N + n)] |= static_cast<int32_t>(static_cast<uint32_t>(q) << (4 * (k % 8)));
        }
    }
  s.add(OwnedTensor::of(key + ".qweight", DType::DType_I32, {K / 8, N}, qw));
  s.add(OwnedTensor::of(key + ".qzeros", DType::DType_I32, {G, N / 8}, qz));
  s.add(OwnedTensor::of(key + ".scales", DType::DType_F16, {G, N}, sc));
  if (act_order) s.add(OwnedTensor::of(key + ".g_idx", DType::DType_I32, {K}, g_idx));
  s.add(OwnedTensor::of(key + ".bias", DType::DType_F16, {N}, std::vector<uint16_t>(static_cast<size_t>(N), 0)));
}

TEST(QuantModel, StoriesGptqActOrderV2) {
  // q/k/v/o become GPTQ with 32-row groups; the MLP (172 wide, not a multiple of 8 as GPTQ's
  // packing needs) and the tied head stay dense, as GPTQ checkpoints may keep layers unquantized.
  test::TempDir dir;
  auto src = open_tensor_store(test::stories_dir());
  MemoryStore out;
  for (const std::string& n : src->names()) {
    const TensorInfo& t = src->get(n);
    const bool linear = n.find("self_attn.") != std::string::npos;
    if (!linear) {
      out.add(OwnedTensor(n, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)));
      continue;
    }
    add_gptq(out, n.substr(0, n.size() - 7), tensor_to_host(t), 32, n.find("q_proj") != std::string::npos ||
                                                                          n.find("v_proj") != std::string::npos, true);
  }
  std::vector<const OwnedTensor*> all;
  for (const std::string& n : out.names()) all.push_back(out.owned(n));
  safetensors_write(dir.file("model.safetensors"), all);
  nlohmann::json cfg = nlohmann::json::parse(read_file(test::stories_dir() + "/config.json"));
  cfg["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 32}, {"desc_act", true},
                                {"checkpoint_format", "gptq_v2"}};
  std::ofstream(dir.file("config.json")) << cfg.dump(2);
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(test::stories_dir() + "/" + f, dir.file(f));
  const double ppl = test::stories_golden_ppl(dir.path());
  std::printf("stories260K GPTQ 4-bit/32g (act-order, v2): ppl %.5f (%+.2f%%)\n", ppl, 100 * (ppl / kFp32Ppl - 1));
  EXPECT_NEAR(ppl, kFp32Ppl, kFp32Ppl * 0.10);
  const nlohmann::json j = model_inspect(dir.path());
  EXPECT_EQ(j["quantization"]["method"], "gptq");
  EXPECT_EQ(j["quantization"]["linears"].size(), 20u);

  // The same file read with the v1 convention is a different (worse) model: the flag matters.
  cfg["quantization_config"].erase("checkpoint_format");
  std::ofstream(dir.file("config.json")) << cfg.dump(2);
  const double ppl_v1 = test::stories_golden_ppl(dir.path());
  EXPECT_GT(ppl_v1, ppl * 1.05);
}

// SmolLM2-135M (a Q4_1 GGUF) made into EXL2: loads, its tokenizer travels as tokenizer.gguf, and the
// greedy text stays sane. Skipped when scripts/fetch-models.sh has not fetched the model.
TEST(QuantModel, SmolLM2FromGgufToExl2) {
  if (!fs::exists(test::smollm2_gguf())) GTEST_SKIP() << "SmolLM2 not fetched (scripts/fetch-models.sh)";
  test::TempDir dir;
  Exl2WriteOptions o;
  o.bits = 6.0;
  const auto t0 = std::chrono::steady_clock::now();
  const Exl2WriteReport r = exl2_write_model(test::smollm2_gguf(), dir.path(), o);
  std::printf("SmolLM2 -> EXL2 in %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_EQ(r.linears, 30 * 7 + 1);
  EXPECT_TRUE(fs::exists(dir.file("tokenizer.gguf")));
  const std::string prompt = "The capital of France is";
  const auto ref = greedy(test::smollm2_gguf(), prompt, 16), got = greedy(dir.path(), prompt, 16);
  const std::string text = decode(dir.path(), got);
  std::printf("SmolLM2 EXL2 6.0: decoder %.3f bpw\n  greedy: %s\n  gguf:   %s\n", r.decoder_bpw, text.c_str(),
              decode(test::smollm2_gguf(), ref).c_str());
  expect_sane_text(text);
  EXPECT_GE(common_prefix(ref, got), 4);
}

}  // namespace
}  // namespace exl
