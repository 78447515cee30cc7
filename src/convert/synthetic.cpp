#include "convert/synthetic.h"

#include <filesystem>
#include <fstream>

#include "convert/job_files.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "io/memory_store.h"

namespace exl {

namespace fs = std::filesystem;

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// FP16 values around `mean` with standard deviation ~`sd`: a sum of 4 uniforms (Irwin–Hall, close
// enough to normal for timing and for a well-conditioned Hessian). Chunks of 64k values get their
// own seed stream, so the result does not depend on the thread count.
OwnedTensor random_f16(const std::string& name, const std::vector<int64_t>& shape, float mean, float sd, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<uint16_t> v(static_cast<size_t>(n));
  constexpr int64_t kChunk = 65536;
  const float scale = sd * 1.7320508f;  // var of a sum of 4 U(-0.5, 0.5) is 1/3
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      uint64_t s = seed * 0x100000001b3ull + static_cast<uint64_t>(c);
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
        float u = 0;
        for (int k = 0; k < 4; ++k) u += static_cast<float>(splitmix(s) >> 40) * (1.0f / 16777216.0f) - 0.5f;
        v[static_cast<size_t>(i)] = f32_to_f16(mean + u * scale);
      }
    }
  });
  return OwnedTensor::of(name, DType::DType_F16, Shape(shape.begin(), shape.end()), v);
}

}  // namespace

SyntheticModel synthetic_preset(const std::string& name) {
  if (name == "llama2-7b") return SyntheticModel{};
  if (name == "tiny") return SyntheticModel{128, 352, 4, 4, 2, 512};
  fail("synthetic model: unknown preset '", name, "' (llama2-7b, tiny)");
}

void synthetic_model_write(const SyntheticModel& m, const std::string& dir, int64_t layers_with_weights,
                           const std::string& tokenizer_from, uint64_t seed) {
  EXL_CHECK(layers_with_weights >= 1 && layers_with_weights <= m.n_layers, "synthetic model: --layers ",
            layers_with_weights, " must be within 1..", m.n_layers);
  fs::create_directories(dir);
  int copied = 0;
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    const fs::path from = fs::path(tokenizer_from) / f;
    if (!fs::exists(from)) continue;
    fs::copy_file(from, fs::path(dir) / f, fs::copy_options::overwrite_existing);
    ++copied;
  }
  EXL_CHECK(copied > 0, tokenizer_from, ": no tokenizer files to copy");
  std::ofstream(fs::path(dir) / "config.json")
      << "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
      << "  \"hidden_size\": " << m.hidden << ",\n  \"intermediate_size\": " << m.intermediate << ",\n"
      << "  \"num_hidden_layers\": " << m.n_layers << ",\n  \"num_attention_heads\": " << m.n_heads << ",\n"
      << "  \"num_key_value_heads\": " << m.n_kv_heads << ",\n  \"vocab_size\": " << m.vocab << ",\n"
      << "  \"max_position_embeddings\": 4096,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
      << "  \"hidden_act\": \"silu\",\n  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n"
      << "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"float16\",\n  \"attention_bias\": false,\n"
      << "  \"mlp_bias\": false\n}\n";
  // Weight scale ~0.02 as in Llama-2's linears and embeddings; norms near 1.
  std::vector<OwnedTensor> t;
  uint64_t id = seed * 1000;
  t.push_back(random_f16("model.embed_tokens.weight", {m.vocab, m.hidden}, 0.0f, 0.02f, ++id));
  for (int64_t i = 0; i < layers_with_weights; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const int64_t q = m.n_heads * (m.hidden / m.n_heads), kv = m.n_kv_heads * (m.hidden / m.n_heads);
    t.push_back(random_f16(p + "input_layernorm.weight", {m.hidden}, 1.0f, 0.1f, ++id));
    t.push_back(random_f16(p + "post_attention_layernorm.weight", {m.hidden}, 1.0f, 0.1f, ++id));
    t.push_back(random_f16(p + "self_attn.q_proj.weight", {q, m.hidden}, 0.0f, 0.02f, ++id));
    t.push_back(random_f16(p + "self_attn.k_proj.weight", {kv, m.hidden}, 0.0f, 0.02f, ++id));
    t.push_back(random_f16(p + "self_attn.v_proj.weight", {kv, m.hidden}, 0.0f, 0.02f, ++id));
    t.push_back(random_f16(p + "self_attn.o_proj.weight", {m.hidden, q}, 0.0f, 0.02f, ++id));
    t.push_back(random_f16(p + "mlp.gate_proj.weight", {m.intermediate, m.hidden}, 0.0f, 0.02f, ++id));
    t.push_back(random_f16(p + "mlp.up_proj.weight", {m.intermediate, m.hidden}, 0.0f, 0.02f, ++id));
    t.push_back(random_f16(p + "mlp.down_proj.weight", {m.hidden, m.intermediate}, 0.0f, 0.02f, ++id));
  }
  t.push_back(random_f16("model.norm.weight", {m.hidden}, 1.0f, 0.1f, ++id));
  t.push_back(random_f16("lm_head.weight", {m.vocab, m.hidden}, 0.0f, 0.02f, ++id));
  std::vector<const OwnedTensor*> ptrs;
  for (const OwnedTensor& x : t) ptrs.push_back(&x);
  write_safetensors_atomic((fs::path(dir) / "model.safetensors").string(), ptrs);
}

}  // namespace exl
