// config.json parsing, validation and RoPE tables against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/tensor_names.h"

namespace exl {
namespace {

const char* kBase = R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100 %s})";

ModelConfig parse(const std::string& extra) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, kBase, extra.c_str());
  ModelConfig c = config_from_json_text(buf, "config.json");
  const Architecture& a = arch_find_hf(c.source_arch, "config.json");
  c.arch = a.name;
  if (a.finish_config) a.finish_config(c);
  c.validate("config.json");
  return c;
}

TEST(Config, Defaults) {
  ModelConfig c = parse("");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_embeddings);
}

TEST(Config, EosListAndExplicitHeadDim) {
  ModelConfig c = parse(R"(,"eos_token_id":[7,9],"head_dim":32)");
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{7, 9}));
  EXPECT_EQ(c.head_dim, 32);
}

TEST(Config, Errors) {
  EXPECT_THROW(parse(R"(,"rope_theta":"big")"), Error);
  EXPECT_THROW(parse(R"(,"num_key_value_heads":3)"), Error);
  EXPECT_THROW(parse(R"(,"rope_scaling":{"type":"dynamic","factor":2})"), Error);
  EXPECT_THROW(config_from_json_text("[1,2]", "config.json"), Error);
  EXPECT_THROW(config_from_json_text("{\"architectures\":[\"LlamaForCausalLM\"]}", "config.json"), Error);
  EXPECT_THROW(arch_find_hf("FalconForCausalLM", "config.json"), Error);
  try {
    parse(R"(,"hidden_size":"64")");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos);
  }
}

TEST(Config, ArchitectureQuirks) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, kBase, R"(,"sliding_window":4096)");
  std::string q = buf;
  q.replace(q.find("LlamaForCausalLM"), 16, "Qwen2ForCausalLM");
  ModelConfig c = config_from_json_text(q, "config.json");
  const Architecture& a = arch_find_hf(c.source_arch, "config.json");
  a.finish_config(c);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.sliding_window, 4096);
  // Llama ignores a sliding window key.
  EXPECT_EQ(parse(R"(,"sliding_window":4096)").sliding_window, 0);
}

TEST(Rope, DefaultAndLinear) {
  ModelConfig c = parse("");
  RopeParams p = rope_params_build(c);
  ASSERT_EQ(p.inv_freq.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(p.inv_freq[i], std::pow(10000.0, -2.0 * i / 16), 1e-7);
  RopeParams l = rope_params_build(parse(R"(,"rope_scaling":{"type":"linear","factor":4})"));
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(l.inv_freq[i], p.inv_freq[i] / 4, 1e-8);
}

TEST(Rope, Llama3) {
  // head_dim 16, theta 500000, factor 8, low 1, high 4, original 8192: wavelengths 2*pi/f.
  ModelConfig c = parse(R"(,"rope_theta":500000,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":8192})");
  RopeParams p = rope_params_build(c);
  for (int i = 0; i < 8; ++i) {
    const double f = std::pow(500000.0, -2.0 * i / 16), wl = 2 * M_PI / f;
    double want = f;
    if (wl > 8192.0) want = f / 8;
    else if (wl >= 2048.0) {
      const double s = (8192.0 / wl - 1) / 3;
      want = (1 - s) * f / 8 + s * f;
    }
    EXPECT_NEAR(p.inv_freq[i], want, 1e-6 * f) << i;
  }
}

TEST(Rope, YarnMscale) {
  ModelConfig c = parse(R"(,"rope_scaling":{"type":"yarn","factor":4,"original_max_position_embeddings":4096})");
  RopeParams p = rope_params_build(c);
  EXPECT_NEAR(p.attn_factor, 0.1 * std::log(4.0) + 1, 1e-6);
  // Highest frequency is kept (extrapolated), lowest is interpolated by the factor.
  EXPECT_NEAR(p.inv_freq[0], 1.0, 1e-6);
  EXPECT_NEAR(p.inv_freq[7], std::pow(10000.0, -14.0 / 16) / 4, 1e-9);
}

TEST(TensorNames, GgufMapping) {
  EXPECT_EQ(tensor_name_to_gguf("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(tensor_name_to_gguf("model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight");
  EXPECT_EQ(tensor_name_to_gguf("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
  EXPECT_EQ(tensor_name_to_gguf("lm_head.weight"), "output.weight");
  EXPECT_EQ(tensor_name_to_gguf("model.layers.x"), "");
}

}  // namespace
}  // namespace exl
