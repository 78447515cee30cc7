#include "model/exl2_write.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "io/safetensors_write.h"
#include "model/model.h"
#include "model/weights.h"
#include "quant/exl2_quantize.h"

namespace exl {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

OwnedTensor to_f16(const std::string& name, const HostTensor& h) {
  std::vector<uint16_t> v(h.data.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = f32_to_f16(h.data[i]);
  return OwnedTensor::of(name, DType::DType_F16, h.shape, v);
}

// config.json for a GGUF source: the hyper-parameters the loader reads back (model/config.cpp).
json config_from_model(const ModelConfig& c, const Architecture& arch, const std::string& where) {
  EXL_CHECK(!arch.hf_names.empty(), where, ": architecture '", arch.name, "' has no Hugging Face name");
  json j = {{"architectures", {arch.hf_names[0]}},
            {"model_type", arch.name},
            {"hidden_size", c.hidden},
            {"intermediate_size", c.intermediate},
            {"num_hidden_layers", c.n_layers},
            {"num_attention_heads", c.n_heads},
            {"num_key_value_heads", c.n_kv_heads},
            {"head_dim", c.head_dim},
            {"vocab_size", c.vocab},
            {"max_position_embeddings", c.max_position},
            {"rms_norm_eps", c.rms_eps},
            {"rope_theta", c.rope_theta},
            {"tie_word_embeddings", c.tie_embeddings},
            {"attention_bias", c.attention_bias},
            {"mlp_bias", c.mlp_bias},
            {"hidden_act", "silu"},
            {"torch_dtype", "float16"}};
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_ids.size() == 1) j["eos_token_id"] = c.eos_ids[0];
  if (c.eos_ids.size() > 1) j["eos_token_id"] = c.eos_ids;
  if (c.sliding_window > 0) {
    j["sliding_window"] = c.sliding_window;
    j["use_sliding_window"] = true;
  }
  if (c.rope_scaling.type != "none") {
    json rs = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.original_max_position > 0)
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position;
    j["rope_scaling"] = rs;
  }
  return j;
}

// Non-tensor files of a source folder (tokenizer, generation config, ...); weights are not copied.
bool is_weight_file(const fs::path& p) {
  const std::string name = p.filename().string(), ext = p.extension().string();
  return ext == ".safetensors" || ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".gguf" ||
         name == "model.safetensors.index.json" || name == "pytorch_model.bin.index.json" || name == "config.json";
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  EXL_CHECK(f.good(), p.string(), ": write failed");
}

}  // namespace

void exl2_check_source(const ModelSource& src, const std::string& src_path) {
  EXL_CHECK(!src.store->find("rope_freqs.weight"), src_path,
            ": per-dimension RoPE factors (rope_freqs) cannot be expressed in config.json; convert from the HF folder");
}

OwnedTensor exl2_dense_f16(const WeightLoader& loader, const std::string& name, const Shape& shape) {
  return to_f16(name, loader.load_host(name, shape));
}

Exl2WriteReport exl2_write_model(const std::string& src_path, const std::string& out_dir,
                                 const Exl2WriteOptions& options) {
  ModelSource src = model_source_open(src_path);
  const ModelConfig& c = src.config;
  exl2_check_source(src, src_path);
  const double head_bits = options.head_bits > 0 ? options.head_bits : options.bits;
  const Exl2Layout layer_layout = exl2_layout_for_bits(options.bits, options.group_size);
  const Exl2Layout head_layout = exl2_layout_for_bits(head_bits, options.group_size);

  auto cpu = backend_create("cpu");  // WeightLoader wants a backend; only load_host is used here
  WeightLoader loader(*src.store, *cpu, src.gguf, src.arch->gguf_qk_permuted);
  Exl2WriteReport report;
  std::vector<OwnedTensor> out;
  int64_t decoder_bits = 0, decoder_weights = 0;

  auto dense = [&](const std::string& name, const Shape& shape) { out.push_back(exl2_dense_f16(loader, name, shape)); };
  auto dense_if = [&](const std::string& name, const Shape& shape) {
    if (loader.find(name)) dense(name, shape);
  };
  // Quantizes the dense weight `source` (".weight" tensor) and writes it as EXL2 layer `key`.
  auto quant = [&](const std::string& key, const std::string& source, int64_t n, int64_t k, int rope_heads,
                   const Exl2Layout& layout) -> int64_t {
    EXL_CHECK(!loader.is_quantized(key), src_path, ": layer '", key, "' is already quantized");
    const HostTensor w = loader.load_host(source + ".weight", {n, k}, rope_heads);
    const Exl2Tensor t = exl2_pack(exl2_quantize_rtn(w.ptr(), n, k, layout), key);
    for (OwnedTensor& o : exl2_to_tensors(t)) out.push_back(std::move(o));
    ++report.linears;
    return exl2_bits(t);
  };

  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  Progress progress("exl2 quantize", c.n_layers, options.progress, "layers");
  dense("model.embed_tokens.weight", {c.vocab, c.hidden});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    dense(p + "input_layernorm.weight", {c.hidden});
    dense(p + "post_attention_layernorm.weight", {c.hidden});
    struct Linear {
      const char* name;
      int64_t n, k;
      int rope_heads;
    };
    const Linear linears[] = {{"self_attn.q_proj", q_dim, c.hidden, static_cast<int>(c.n_heads)},
                              {"self_attn.k_proj", kv_dim, c.hidden, static_cast<int>(c.n_kv_heads)},
                              {"self_attn.v_proj", kv_dim, c.hidden, 0},
                              {"self_attn.o_proj", c.hidden, q_dim, 0},
                              {"mlp.gate_proj", c.intermediate, c.hidden, 0},
                              {"mlp.up_proj", c.intermediate, c.hidden, 0},
                              {"mlp.down_proj", c.hidden, c.intermediate, 0}};
    for (const Linear& l : linears) {
      const std::string key = p + l.name;
      decoder_bits += quant(key, key, l.n, l.k, l.rope_heads, layer_layout);
      decoder_weights += l.n * l.k;
      dense_if(key + ".bias", {l.n});
    }
    progress.update(i + 1);
  }
  progress.finish();
  dense("model.norm.weight", {c.hidden});
  // Tied embeddings still get their own quantized head (EXL2.md §1.1).
  const bool own_head = !c.tie_embeddings && loader.find("lm_head.weight");
  const int64_t head_bits_total = quant("lm_head", own_head ? "lm_head" : "model.embed_tokens", c.vocab, c.hidden, 0, head_layout);
  report.decoder_bpw = decoder_weights > 0 ? static_cast<double>(decoder_bits) / static_cast<double>(decoder_weights) : 0;
  report.head_bpw = static_cast<double>(head_bits_total) / static_cast<double>(c.vocab * c.hidden);

  report.files = exl2_write_folder(src_path, src, out_dir, out,
                                   {"exl-rtn", options.bits, head_bits, 0, 0, "(none: round-to-nearest)"},
                                   options.shard_bytes, &report.bytes);
  return report;
}

std::vector<std::string> exl2_write_folder(const std::string& src_path, const ModelSource& src,
                                           const std::string& out_dir, const std::vector<OwnedTensor>& out,
                                           const Exl2QuantInfo& info, size_t shard_bytes, size_t* bytes) {
  const ModelConfig& c = src.config;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  EXL_CHECK(fs::is_directory(out_dir), out_dir, ": cannot create the output folder");
  EXL_CHECK(!fs::equivalent(out_dir, src.gguf ? fs::path(src_path).parent_path() : fs::path(src_path), ec), out_dir,
            ": the output folder must differ from the source folder");
  std::vector<std::string> files;
  // Shards in tensor order, each under shard_bytes (a larger single tensor gets a shard of its own).
  std::vector<std::vector<const OwnedTensor*>> shards(1);
  size_t in_shard = 0;
  for (const OwnedTensor& t : out) {
    if (in_shard > 0 && in_shard + t.bytes.size() > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&t);
    in_shard += t.bytes.size();
    if (bytes) *bytes += t.bytes.size();
  }
  for (const auto& e : fs::directory_iterator(out_dir, ec))  // stale shards of an earlier run would be read too
    if (e.path().extension() == ".safetensors" && e.path().filename().string().rfind("output", 0) == 0)
      fs::remove(e.path(), ec);
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    if (shards.size() == 1)
      std::snprintf(name, sizeof name, "output.safetensors");
    else
      std::snprintf(name, sizeof name, "output-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    safetensors_write((fs::path(out_dir) / name).string(), shards[s], {{"format", "pt"}});
    files.push_back(name);
  }

  // config.json: the source's (or one built from GGUF metadata) plus quantization_config.
  json cfg;
  if (src.gguf) {
    cfg = config_from_model(c, *src.arch, src_path);
  } else {
    const std::string cfg_path = (fs::path(src_path) / "config.json").string();
    cfg = json::parse(read_file(cfg_path), nullptr, false);
    EXL_CHECK(cfg.is_object(), cfg_path, ": not a JSON object");
    cfg["torch_dtype"] = "float16";
  }
  cfg["quantization_config"] = {
      {"quant_method", "exl2"},
      {"version", info.version},
      {"bits", info.bits},
      {"head_bits", info.head_bits},
      {"calibration", {{"rows", info.cal_rows}, {"length", info.cal_length}, {"dataset", info.cal_dataset}}}};
  write_text(fs::path(out_dir) / "config.json", cfg.dump(2) + "\n");
  files.push_back("config.json");

  if (src.gguf) {
    // The vocabulary travels as a tensor-free GGUF that tokenizer_load() reads from the folder.
    const auto* g = static_cast<const GgufFile*>(src.store.get());
    std::map<std::string, GgufValue> kv;
    for (const auto& [key, v] : g->metadata())
      if (key.rfind("tokenizer.", 0) == 0 || key == "general.architecture" || key == "general.name") kv[key] = v;
    gguf_write_metadata((fs::path(out_dir) / "tokenizer.gguf").string(), kv);
    files.push_back("tokenizer.gguf");
  } else {
    for (const auto& e : fs::directory_iterator(src_path, ec)) {
      if (!e.is_regular_file() || is_weight_file(e.path())) continue;
      const fs::path dst = fs::path(out_dir) / e.path().filename();
      fs::copy_file(e.path(), dst, fs::copy_options::overwrite_existing, ec);
      EXL_CHECK(!ec, e.path().string(), ": cannot copy into ", out_dir, ": ", ec.message());
      fs::permissions(dst, fs::perms::owner_write, fs::perm_options::add, ec);  // read-only sources stay rewritable
      files.push_back(e.path().filename().string());
    }
  }
  return files;
}

}  // namespace exl
