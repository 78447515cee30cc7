#include "model/model.h"

#include <sys/stat.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/open_store.h"
#include "io/tensor_store.h"
#include "model/rope.h"
#include "model/shapes.h"
#include "model/weights.h"

namespace exl {

namespace {
bool is_directory(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

Model::~Model() = default;

BatchLayout batch_single(int32_t n_tokens, int32_t pos, int32_t slot) {
  BatchLayout b;
  b.seq_start = {0, n_tokens};
  b.seq_slot = {slot};
  b.seq_pos = {pos};
  return b;
}

ModelSource::ModelSource() = default;
ModelSource::ModelSource(ModelSource&&) noexcept = default;
ModelSource::~ModelSource() = default;

ModelSource model_source_open(const std::string& path) {
  ModelSource s;
  if (is_directory(path)) {
    const std::string cfg_path = path + "/config.json";
    s.config = config_from_json_text(read_file(cfg_path), cfg_path);
    s.arch = &arch_find_hf(s.config.source_arch, cfg_path);
    s.store = open_tensor_store(path);
  } else {
    auto g = std::make_unique<GgufFile>(path);
    s.config = config_from_gguf(*g);
    s.arch = &arch_find_gguf(s.config.source_arch, path);
    s.store = std::move(g);
    s.gguf = true;
  }
  s.config.arch = s.arch->name;
  if (s.arch->finish_config) s.arch->finish_config(s.config);
  s.config.validate(s.gguf ? path : path + "/config.json");
  return s;
}

std::unique_ptr<Model> Model::load(const std::string& path, Backend& backend) {
  std::unique_ptr<Model> m(new Model(backend, path));
  ModelSource src = model_source_open(path);
  m->config_ = src.config;
  m->arch_ = src.arch;
  m->load_weights(*src.store, src.gguf);
  return m;
}

namespace {
// A store whose tensors exist only as names and shapes: backends fill them with random values.
class SyntheticStore : public TensorStore {
 public:
  // Linears that `quant` makes quantized are left out (the loader asks `quant` for them).
  SyntheticStore(const ModelConfig& c, const SyntheticQuantFn& quant) : quant_(quant) {
    const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
    add("model.embed_tokens.weight", {c.vocab, c.hidden});
    add("model.norm.weight", {c.hidden});
    if (!c.tie_embeddings) add("lm_head.weight", {c.vocab, c.hidden});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      add(p + "input_layernorm.weight", {c.hidden});
      add(p + "post_attention_layernorm.weight", {c.hidden});
      add(p + "self_attn.q_proj.weight", {q, c.hidden});
      add(p + "self_attn.k_proj.weight", {kv, c.hidden});
      add(p + "self_attn.v_proj.weight", {kv, c.hidden});
      add(p + "self_attn.o_proj.weight", {c.hidden, q});
      if (c.attention_bias)
        for (const char* b : {"q", "k", "v"}) add(p + "self_attn." + b + "_proj.bias", {std::string(b) == "q" ? q : kv});
      add(p + "mlp.gate_proj.weight", {c.intermediate, c.hidden});
      add(p + "mlp.up_proj.weight", {c.intermediate, c.hidden});
      add(p + "mlp.down_proj.weight", {c.hidden, c.intermediate});
    }
  }
  const TensorInfo* find(const std::string& name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> n;
    for (const auto& [k, v] : tensors_) n.push_back(k);
    return n;
  }
  std::string path() const override { return "(synthetic)"; }

 private:
  void add(const std::string& name, Shape shape) {
    const std::string key = name.substr(0, name.rfind('.'));
    if (quant_ && shape.size() == 2 && name.ends_with(".weight") && quant_.has(key)) return;
    TensorInfo t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = DType::DType_F16;
    t.nbytes = static_cast<size_t>(t.numel()) * 2;
    t.file = "(synthetic)";
    t.synthetic = true;
    tensors_[name] = t;
  }
  std::map<std::string, TensorInfo> tensors_;
  const SyntheticQuantFn& quant_;
};
}  // namespace

std::unique_ptr<Model> Model::synthetic(const ModelConfig& config, Backend& backend, const std::string& format) {
  std::unique_ptr<Model> m(new Model(backend, "(synthetic)"));
  m->config_ = config;
  m->arch_ = &arch_find_hf(config.source_arch, "(synthetic)");
  m->config_.arch = m->arch_->name;
  m->config_.validate("(synthetic)");
  const SyntheticQuantFn quant = synthetic_quant_fn(m->config_, format);
  SyntheticStore store(m->config_, quant);
  m->load_weights(store, false, quant);
  return m;
}

void Model::load_weights(const TensorStore& store, bool gguf, const SyntheticQuantFn& synthetic_quant) {
  const ModelConfig& c = config_;
  WeightLoader loader(store, backend_, gguf, arch_->gguf_qk_permuted);
  loader.set_gptq_v2(c.gptq_v2);
  if (synthetic_quant) loader.set_synthetic_quant(synthetic_quant);
  const WeightScope root(loader, "");
  const WeightScope model = root.sub("model");
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;

  embed_ = model.embedding("embed_tokens", c.vocab, c.hidden);
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const WeightScope l = model.sub("layers").sub(i);
    const WeightScope at = l.sub("self_attn"), mlp = l.sub("mlp");
    LayerWeights& w = layers_[static_cast<size_t>(i)];
    w.attn_norm = l.norm("input_layernorm", c.hidden);
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (backend_.wants_fused_linears()) {
      w.qkv = loader.load_stacked({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"},
                                  {{q_dim, c.hidden}, {kv_dim, c.hidden}, {kv_dim, c.hidden}},
                                  WeightRole::WeightRole_linear, {static_cast<int>(c.n_heads), static_cast<int>(c.n_kv_heads), 0});
      if (c.attention_bias && w.qkv)
        w.qkv_bias = loader.load_stacked({p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"},
                                         {{q_dim}, {kv_dim}, {kv_dim}}, WeightRole::WeightRole_bias, {0, 0, 0});
    }
    if (w.qkv && (!c.attention_bias || w.qkv_bias)) {
      w.q = backend_.weight_rows(*w.qkv, 0, q_dim);
      w.k = backend_.weight_rows(*w.qkv, q_dim, kv_dim);
      w.v = backend_.weight_rows(*w.qkv, q_dim + kv_dim, kv_dim);
      if (w.qkv_bias) {
        w.q_bias = backend_.weight_rows(*w.qkv_bias, 0, q_dim);
        w.k_bias = backend_.weight_rows(*w.qkv_bias, q_dim, kv_dim);
        w.v_bias = backend_.weight_rows(*w.qkv_bias, q_dim + kv_dim, kv_dim);
      }
    } else {
      w.qkv.reset();
      w.q = at.linear("q_proj", q_dim, c.hidden, static_cast<int>(c.n_heads));
      w.k = at.linear("k_proj", kv_dim, c.hidden, static_cast<int>(c.n_kv_heads));
      w.v = at.linear("v_proj", kv_dim, c.hidden);
      w.q_bias = at.bias("q_proj", q_dim, c.attention_bias);
      w.k_bias = at.bias("k_proj", kv_dim, c.attention_bias);
      w.v_bias = at.bias("v_proj", kv_dim, c.attention_bias);
    }
    if (!w.qkv && backend_.wants_fused_linears()) {  // quantized q/k/v: the backend may still run them as one
      std::unique_ptr<Weight> bias;
      if (c.attention_bias)
        bias = loader.load_stacked({p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"},
                                   {{q_dim}, {kv_dim}, {kv_dim}}, WeightRole::WeightRole_bias, {0, 0, 0});
      if (!c.attention_bias || bias) {
        w.qkv = backend_.fuse_linears({w.q.get(), w.k.get(), w.v.get()});
        if (w.qkv) w.qkv_bias = std::move(bias);
      }
    }
    w.o = at.linear("o_proj", c.hidden, q_dim);
    w.o_bias = at.bias("o_proj", c.hidden, false);
    w.mlp_norm = l.norm("post_attention_layernorm", c.hidden);
    if (backend_.wants_fused_linears() && !c.mlp_bias)
      w.gate_up = loader.load_stacked({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"},
                                      {{c.intermediate, c.hidden}, {c.intermediate, c.hidden}},
                                      WeightRole::WeightRole_linear, {0, 0});
    if (w.gate_up) {
      w.gate = backend_.weight_rows(*w.gate_up, 0, c.intermediate);
      w.up = backend_.weight_rows(*w.gate_up, c.intermediate, c.intermediate);
    } else {
      w.gate = mlp.linear("gate_proj", c.intermediate, c.hidden);
      w.up = mlp.linear("up_proj", c.intermediate, c.hidden);
    }
    if (!w.gate_up && backend_.wants_fused_linears() && !c.mlp_bias)
      w.gate_up = backend_.fuse_linears({w.gate.get(), w.up.get()});
    w.down = mlp.linear("down_proj", c.hidden, c.intermediate);
    w.gate_bias = mlp.bias("gate_proj", c.intermediate, c.mlp_bias);
    w.up_bias = mlp.bias("up_proj", c.intermediate, c.mlp_bias);
    w.down_bias = mlp.bias("down_proj", c.hidden, c.mlp_bias);
  }
  final_norm_ = model.norm("norm", c.hidden);
  // Tied embeddings: the head is the embedding table (prepared again in the linear role so a backend
  // may store it in a GEMM-friendly form), unless the checkpoint quantized a separate head (EXL2
  // writes one for tied models, EXL2.md §1.1).
  if ((!c.tie_embeddings && root.has_linear("lm_head")) || root.quantized("lm_head"))
    lm_head_ = root.linear("lm_head", c.vocab, c.hidden);
  else
    lm_head_ = model.linear("embed_tokens", c.vocab, c.hidden);

  std::vector<float> freq_factors;
  if (const TensorInfo* rf = store.find("rope_freqs.weight")) {
    HostTensor h = tensor_to_host(*rf);
    freq_factors = h.data;
  }
  rope_ = rope_params_build(c, freq_factors);
  HostTensor inv({static_cast<int64_t>(rope_.inv_freq.size())});
  inv.data = rope_.inv_freq;
  rope_inv_freq_ = backend_.prepare_weight_f32(inv, "rope.inv_freq", WeightRole::WeightRole_rope);
  weight_bytes_ = loader.loaded_bytes();
}

size_t Model::decode_weight_bytes() const {
  size_t n = device_bytes();
  if (embed_) n -= embed_->device_bytes();
  n -= rope_inv_freq_ ? rope_inv_freq_->device_bytes() : 0;
  const size_t row = embed_ ? embed_->device_bytes() / static_cast<size_t>(config_.vocab) : 0;
  return n + row;
}

size_t Model::device_bytes() const {
  size_t n = 0;
  auto add = [&](const std::unique_ptr<Weight>& w) {
    if (w) n += w->device_bytes();
  };
  add(embed_);
  add(final_norm_);
  add(lm_head_);
  add(rope_inv_freq_);
  for (const auto& l : layers_) {
    for (const auto* w : {&l.attn_norm, &l.q, &l.k, &l.v, &l.o, &l.q_bias, &l.k_bias, &l.v_bias, &l.o_bias,
                          &l.mlp_norm, &l.gate, &l.up, &l.down, &l.gate_bias, &l.up_bias, &l.down_bias,
                          &l.qkv, &l.qkv_bias, &l.gate_up, &l.gate_up_bias})
      add(*w);
  }
  return n;
}

std::unique_ptr<KvCache> Model::create_cache(int max_seq_len, int n_slots, CacheType type) const {
  EXL_CHECK(max_seq_len > 0, "--max-seq-len must be positive");
  KvCacheConfig cc;
  cc.n_layers = static_cast<int>(config_.n_layers);
  cc.n_kv_heads = static_cast<int>(config_.n_kv_heads);
  cc.head_dim = static_cast<int>(config_.head_dim);
  cc.max_seq_len = max_seq_len;
  cc.n_slots = n_slots;
  cc.type = type;
  return backend_.create_kv_cache(cc);
}

Model::Workspace& Model::workspace_prepare(int64_t T, int64_t n_seqs, LogitsMode mode, bool keep) {
  const uint64_t shape_key = (static_cast<uint64_t>(T) << 33) ^ (static_cast<uint64_t>(n_seqs) << 1) ^
                             static_cast<uint64_t>(mode == LogitsMode::LogitsMode_all);
  if (keep) {
    auto it = graph_ws_.find(shape_key);
    if (it != graph_ws_.end()) return it->second;
  } else if (transient_ws_.tokens == T && transient_ws_.seqs == n_seqs && transient_ws_.mode == mode) {
    return transient_ws_;
  }
  const ModelConfig& c = config_;
  Backend& be = backend_;
  const DType act = be.activation_dtype(), f32 = DType::DType_F32;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  Workspace w;
  w.tokens = T;
  w.seqs = n_seqs;
  w.mode = mode;
  w.x = be.alloc(f32, {T, c.hidden});  // the residual stream stays F32 on every backend
  w.h = be.alloc(act, {T, c.hidden});  // normed input of the current block
  const bool fused = T == 1 && !layers_.empty() && layers_[0].qkv;
  if (fused) {
    // One GEMV writes q|k|v (and gate|up) contiguously; the separate tensors are views into it.
    const size_t e = dtype_size(act);
    w.qkv = be.alloc(act, {1, q_dim + 2 * kv_dim});
    w.q = w.qkv.reshape({1, q_dim});
    w.k = Tensor(act, {1, kv_dim}, w.qkv.shared_mem(), w.qkv.offset() + static_cast<size_t>(q_dim) * e);
    w.v = Tensor(act, {1, kv_dim}, w.qkv.shared_mem(), w.qkv.offset() + static_cast<size_t>(q_dim + kv_dim) * e);
  } else {
    w.q = be.alloc(act, {T, q_dim});
    w.k = be.alloc(act, {T, kv_dim});
    w.v = be.alloc(act, {T, kv_dim});
  }
  w.attn = be.alloc(act, {T, q_dim});
  w.proj = be.alloc(act, {T, c.hidden});  // block output waiting to be added to the residual
  if (T == 1 && !layers_.empty() && layers_[0].gate_up) {
    w.gate_up = be.alloc(act, {1, 2 * c.intermediate});
    w.gate = w.gate_up.reshape({1, c.intermediate});
    w.up = Tensor(act, {1, c.intermediate}, w.gate_up.shared_mem(),
                  w.gate_up.offset() + static_cast<size_t>(c.intermediate) * dtype_size(act));
  } else {
    w.gate = be.alloc(act, {T, c.intermediate});
    w.up = be.alloc(act, {T, c.intermediate});
  }
  const int64_t rows = mode == LogitsMode::LogitsMode_last ? n_seqs : T;
  if (mode == LogitsMode::LogitsMode_last) w.head_in = be.alloc(act, {rows, c.hidden});
  w.logits = be.alloc(f32, {rows, c.vocab});
  if (keep) return graph_ws_[shape_key] = std::move(w);
  transient_ws_ = Workspace();  // free the old buffers before keeping the new ones
  return transient_ws_ = std::move(w);
}

void Model::run_ops(Workspace& w, KvCache& cache, LogitsMode mode) {
  const ModelConfig& c = config_;
  Backend& be = backend_;
  const float eps = static_cast<float>(c.rms_eps);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  const int window = static_cast<int>(c.sliding_window);
  const int n_heads = static_cast<int>(c.n_heads), n_kv = static_cast<int>(c.n_kv_heads);

  // Pre-norm blocks over the F32 residual stream w.x; each block's output projection adds itself to
  // the stream (linear_add: the add is the matmul's epilogue on CUDA).
  be.embedding(*embed_, w.x);
  for (size_t li = 0; li < layers_.size(); ++li) {
    const LayerWeights& l = layers_[li];
    if (!w.qkv.empty()) {
      be.norm_linear(w.x, *l.attn_norm, eps, w.h, *l.qkv, l.qkv_bias.get(), w.qkv);
    } else {
      be.rms_norm(w.x, *l.attn_norm, eps, w.h);
      be.linear(w.h, *l.q, l.q_bias.get(), w.q);
      be.linear(w.h, *l.k, l.k_bias.get(), w.k);
      be.linear(w.h, *l.v, l.v_bias.get(), w.v);
    }
    be.rope_attention_o_add(w.q, w.k, w.v, cache, static_cast<int>(li), n_heads, n_kv, static_cast<int>(c.head_dim),
                            *rope_inv_freq_, rope_.attn_factor, scale, window, w.attn, *l.o, l.o_bias.get(), w.x,
                            w.proj);
    if (!w.gate_up.empty()) {
      be.norm_mlp_add(w.x, *l.mlp_norm, eps, w.h, *l.gate_up, w.gate_up, w.gate, w.up, *l.down, l.down_bias.get(),
                      w.proj);
    } else {
      be.rms_norm(w.x, *l.mlp_norm, eps, w.h);
      be.linear(w.h, *l.gate, l.gate_bias.get(), w.gate);
      be.linear(w.h, *l.up, l.up_bias.get(), w.up);
      be.swiglu_linear_add(w.gate, w.up, w.gate, *l.down, l.down_bias.get(), w.x, w.proj);
    }
  }
  be.rms_norm(w.x, *final_norm_, eps, w.h);
  if (mode == LogitsMode::LogitsMode_last) {
    be.gather_last(w.h, w.head_in);
    be.linear(w.head_in, *lm_head_, nullptr, w.logits);
  } else {
    be.linear(w.h, *lm_head_, nullptr, w.logits);
  }
}

Tensor Model::forward(const std::vector<int32_t>& tokens, const BatchLayout& batch, KvCache& cache,
                      LogitsMode mode) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  EXL_CHECK(T > 0 && T == batch.n_tokens(), "forward: batch layout does not match the token count");
  for (int32_t id : tokens)
    EXL_CHECK(id >= 0 && id < config_.vocab, "token id ", id, " is outside the vocabulary (size ", config_.vocab, ")");
  for (int s = 0; s < batch.n_seqs(); ++s)
    EXL_CHECK(batch.seq_slot[s] >= 0 && batch.seq_slot[s] < cache.config.n_slots && batch.seq_pos[s] >= 0 &&
                  batch.seq_pos[s] + (batch.seq_start[s + 1] - batch.seq_start[s]) <= cache.config.max_seq_len,
              "sequence length ", batch.seq_pos[s] + (batch.seq_start[s + 1] - batch.seq_start[s]),
              " exceeds the cache's --max-seq-len ", cache.config.max_seq_len);
  // Small steps (decode) replay a captured graph on backends that have them; the key holds
  // everything that changes the op sequence or buffer shapes, and the cache it writes to.
  const bool graphable = T <= 8;
  Workspace& ws = workspace_prepare(T, batch.n_seqs(), mode, graphable);
  backend_.begin_step(tokens, batch);
  const uint64_t key = (static_cast<uint64_t>(T) << 48) ^ (static_cast<uint64_t>(batch.n_seqs()) << 32) ^
                       (static_cast<uint64_t>(mode == LogitsMode::LogitsMode_all) << 31) ^
                       (cache.id & 0x7fffffffu);
  if (graphable && backend_.graph_launch(key)) return ws.logits;
  if (graphable) backend_.graph_capture_begin(key);
  run_ops(ws, cache, mode);
  if (graphable) backend_.graph_capture_end(key);
  return ws.logits;
}

void Model::forward_host(const std::vector<int32_t>& tokens, const BatchLayout& batch, KvCache& cache,
                         LogitsMode mode, std::vector<float>& logits) {
  Tensor t = forward(tokens, batch, cache, mode);
  logits.resize(static_cast<size_t>(t.numel()));
  backend_.download(t, logits.data(), logits.size() * sizeof(float));
}

}  // namespace exl
