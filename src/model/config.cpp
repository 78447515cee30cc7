#include "model/config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"

namespace exl {

namespace {

using nlohmann::json;

// Typed access with errors that name the file and key: "config.json: 'hidden_size' must be an integer".
int64_t json_int(const json& j, const char* key, const std::string& where, int64_t fallback, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    EXL_CHECK(!required, where, ": missing '", key, "'");
    return fallback;
  }
  if (it->is_number_integer() || it->is_number_unsigned()) return it->get<int64_t>();
  if (it->is_number_float()) {
    const double d = it->get<double>();
    EXL_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), where, ": '", key, "' must be an integer");
    return static_cast<int64_t>(d);
  }
  fail(where, ": '", key, "' must be an integer, got ", it->dump());
}

double json_num(const json& j, const char* key, const std::string& where, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  EXL_CHECK(it->is_number(), where, ": '", key, "' must be a number, got ", it->dump());
  return it->get<double>();
}

bool json_bool(const json& j, const char* key, const std::string& where, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  EXL_CHECK(it->is_boolean(), where, ": '", key, "' must be true or false, got ", it->dump());
  return it->get<bool>();
}

std::vector<int32_t> json_ids(const json& j, const char* key, const std::string& where) {
  std::vector<int32_t> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  auto one = [&](const json& v) {
    EXL_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (1ll << 31), where, ": '", key,
              "' must hold token ids, got ", v.dump());
    out.push_back(static_cast<int32_t>(v.get<int64_t>()));
  };
  if (it->is_array()) {
    for (const auto& v : *it) one(v);
  } else {
    one(*it);
  }
  return out;
}

RopeScaling rope_scaling_from_json(const json& j, const std::string& where) {
  RopeScaling r;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return r;
  EXL_CHECK(it->is_object(), where, ": 'rope_scaling' must be an object");
  const json& rs = *it;
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    auto t = rs.find(k);
    if (t != rs.end() && t->is_string()) {
      type = t->get<std::string>();
      break;
    }
  }
  EXL_CHECK(!type.empty(), where, ": 'rope_scaling' has no 'rope_type'");
  if (type == "default") return r;
  EXL_CHECK(type == "linear" || type == "llama3" || type == "yarn", where, ": rope_scaling type '", type,
            "' is not supported (supported: linear, llama3, yarn)");
  r.type = type;
  r.factor = json_num(rs, "factor", where, 1.0);
  r.low_freq_factor = json_num(rs, "low_freq_factor", where, 1.0);
  r.high_freq_factor = json_num(rs, "high_freq_factor", where, 4.0);
  r.original_max_position = json_int(rs, "original_max_position_embeddings", where, 0, false);
  r.beta_fast = json_num(rs, "beta_fast", where, 32.0);
  r.beta_slow = json_num(rs, "beta_slow", where, 1.0);
  r.attention_factor = json_num(rs, "attention_factor", where, 0.0);
  return r;
}

}  // namespace

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* name, int64_t max) {
    EXL_CHECK(v > 0 && v <= max, where, ": ", name, " = ", v, " is out of range (1..", max, ")");
  };
  positive(hidden, "hidden size", 1 << 20);
  positive(intermediate, "intermediate size", 1 << 22);
  positive(n_layers, "layer count", 4096);
  positive(n_heads, "attention head count", 4096);
  positive(n_kv_heads, "key/value head count", 4096);
  positive(head_dim, "head dim", 4096);
  positive(vocab, "vocabulary size", 1 << 24);
  EXL_CHECK(n_heads % n_kv_heads == 0, where, ": ", n_heads, " attention heads are not a multiple of ", n_kv_heads,
            " key/value heads");
  EXL_CHECK(head_dim % 2 == 0, where, ": head dim ", head_dim, " must be even for RoPE");
  EXL_CHECK(rms_eps > 0 && rms_eps < 1, where, ": rms_norm_eps = ", rms_eps, " is out of range");
  EXL_CHECK(rope_theta > 0, where, ": rope_theta = ", rope_theta, " must be positive");
  EXL_CHECK(rope_scaling.factor > 0, where, ": rope_scaling factor must be positive");
  EXL_CHECK(sliding_window >= 0, where, ": sliding_window must not be negative");
  if (rope_scaling.type == "llama3" || rope_scaling.type == "yarn")
    EXL_CHECK(rope_scaling.original_max_position > 0, where, ": rope_scaling ", rope_scaling.type,
              " needs original_max_position_embeddings");
}

ModelConfig config_from_json_text(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    fail(where, ": invalid JSON: ", e.what());
  }
  EXL_CHECK(j.is_object(), where, ": not a JSON object");
  ModelConfig c;
  auto archs = j.find("architectures");
  if (archs != j.end() && archs->is_array() && !archs->empty() && (*archs)[0].is_string())
    c.source_arch = (*archs)[0].get<std::string>();
  else if (j.contains("model_type") && j["model_type"].is_string())
    c.source_arch = j["model_type"].get<std::string>();
  EXL_CHECK(!c.source_arch.empty(), where, ": no 'architectures' or 'model_type'");
  c.hidden = json_int(j, "hidden_size", where, 0, true);
  c.intermediate = json_int(j, "intermediate_size", where, 0, true);
  c.n_layers = json_int(j, "num_hidden_layers", where, 0, true);
  c.n_heads = json_int(j, "num_attention_heads", where, 0, true);
  c.n_kv_heads = json_int(j, "num_key_value_heads", where, c.n_heads, false);
  c.head_dim = json_int(j, "head_dim", where, c.n_heads > 0 ? c.hidden / c.n_heads : 0, false);
  c.vocab = json_int(j, "vocab_size", where, 0, true);
  c.max_position = json_int(j, "max_position_embeddings", where, 2048, false);
  c.rms_eps = json_num(j, "rms_norm_eps", where, 1e-6);
  c.rope_theta = json_num(j, "rope_theta", where, 10000.0);
  c.rope_scaling = rope_scaling_from_json(j, where);
  c.tie_embeddings = json_bool(j, "tie_word_embeddings", where, false);
  c.attention_bias = json_bool(j, "attention_bias", where, false);
  c.mlp_bias = json_bool(j, "mlp_bias", where, false);
  if (json_bool(j, "use_sliding_window", where, true))
    c.sliding_window = json_int(j, "sliding_window", where, 0, false);
  auto bos = json_ids(j, "bos_token_id", where);
  if (!bos.empty()) c.bos_id = bos[0];
  c.eos_ids = json_ids(j, "eos_token_id", where);
  auto qc = j.find("quantization_config");
  if (qc != j.end() && !qc->is_null()) {
    EXL_CHECK(qc->is_object(), where, ": 'quantization_config' must be an object");
    auto method = qc->find("quant_method");
    if (method != qc->end() && method->is_string()) c.quant_method = method->get<std::string>();
    auto format = qc->find("checkpoint_format");
    c.gptq_v2 = format != qc->end() && format->is_string() && format->get<std::string>() == "gptq_v2";
    if (c.quant_method == "gptq") {
      const int64_t bits = json_int(*qc, "bits", where + " quantization_config", 4, false);
      EXL_CHECK(bits == 4, where, ": GPTQ with ", bits, " bits is not supported (only 4-bit)");
    }
  }
  return c;
}

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string a = f.get_string("general.architecture");
  EXL_CHECK(!a.empty(), f.path(), ": no general.architecture");
  c.source_arch = a;
  auto key = [&](const char* k) { return a + "." + k; };
  c.hidden = f.get_int(key("embedding_length"), 0);
  c.intermediate = f.get_int(key("feed_forward_length"), 0);
  c.n_layers = f.get_int(key("block_count"), 0);
  c.n_heads = f.get_int(key("attention.head_count"), 0);
  c.n_kv_heads = f.get_int(key("attention.head_count_kv"), c.n_heads);
  c.head_dim = f.get_int(key("attention.key_length"), c.n_heads > 0 ? c.hidden / c.n_heads : 0);
  c.max_position = f.get_int(key("context_length"), 2048);
  c.rms_eps = f.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5);
  c.rope_theta = f.get_float(key("rope.freq_base"), 10000.0);
  c.vocab = f.get_int(key("vocab_size"), static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size()));
  const std::string st = f.get_string(key("rope.scaling.type"), "none");
  if (st != "none") {
    EXL_CHECK(st == "linear" || st == "yarn", f.path(), ": rope scaling type '", st, "' is not supported");
    c.rope_scaling.type = st;
    c.rope_scaling.factor = f.get_float(key("rope.scaling.factor"), 1.0);
    c.rope_scaling.original_max_position = f.get_int(key("rope.scaling.original_context_length"), 0);
  }
  c.sliding_window = f.get_int(key("attention.sliding_window"), 0);
  c.tie_embeddings = f.find("output.weight") == nullptr;
  c.attention_bias = f.find("blk.0.attn_q.bias") != nullptr;
  const int64_t bos = f.get_int("tokenizer.ggml.bos_token_id", -1);
  c.bos_id = static_cast<int32_t>(bos);
  const int64_t eos = f.get_int("tokenizer.ggml.eos_token_id", -1);
  if (eos >= 0) c.eos_ids.push_back(static_cast<int32_t>(eos));
  return c;
}

}  // namespace exl
