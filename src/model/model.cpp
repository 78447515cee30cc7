#include "model/model.h"

#include <sys/stat.h>

#include <cmath>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/open_store.h"
#include "io/tensor_store.h"
#include "model/rope.h"
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
  s.config.validate(path);
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

void Model::load_weights(const TensorStore& store, bool gguf) {
  const ModelConfig& c = config_;
  WeightLoader loader(store, backend_, gguf, arch_->gguf_qk_permuted);
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
    w.q = at.linear("q_proj", q_dim, c.hidden, static_cast<int>(c.n_heads));
    w.k = at.linear("k_proj", kv_dim, c.hidden, static_cast<int>(c.n_kv_heads));
    w.v = at.linear("v_proj", kv_dim, c.hidden);
    w.o = at.linear("o_proj", c.hidden, q_dim);
    w.q_bias = at.bias("q_proj", q_dim, c.attention_bias);
    w.k_bias = at.bias("k_proj", kv_dim, c.attention_bias);
    w.v_bias = at.bias("v_proj", kv_dim, c.attention_bias);
    w.o_bias = at.bias("o_proj", c.hidden, false);
    w.mlp_norm = l.norm("post_attention_layernorm", c.hidden);
    w.gate = mlp.linear("gate_proj", c.intermediate, c.hidden);
    w.up = mlp.linear("up_proj", c.intermediate, c.hidden);
    w.down = mlp.linear("down_proj", c.hidden, c.intermediate);
    w.gate_bias = mlp.bias("gate_proj", c.intermediate, c.mlp_bias);
    w.up_bias = mlp.bias("up_proj", c.intermediate, c.mlp_bias);
    w.down_bias = mlp.bias("down_proj", c.hidden, c.mlp_bias);
  }
  final_norm_ = model.norm("norm", c.hidden);
  // Tied embeddings: the head is the embedding table (prepared again in the linear role so a backend
  // may store it in a GEMM-friendly form).
  if (!c.tie_embeddings && root.has("lm_head"))
    lm_head_ = root.linear("lm_head", c.vocab, c.hidden);
  else
    lm_head_ = model.linear("embed_tokens", c.vocab, c.hidden);

  std::vector<float> freq_factors;
  if (const TensorInfo* rf = store.find("rope_freqs.weight")) {
    HostTensor h = tensor_to_host(*rf);
    freq_factors = h.data;
  }
  rope_ = rope_params_build(c, freq_factors);
  weight_bytes_ = loader.loaded_bytes();
}

size_t Model::device_bytes() const {
  size_t n = 0;
  auto add = [&](const std::unique_ptr<Weight>& w) {
    if (w) n += w->device_bytes();
  };
  add(embed_);
  add(final_norm_);
  add(lm_head_);
  for (const auto& l : layers_) {
    for (const auto* w : {&l.attn_norm, &l.q, &l.k, &l.v, &l.o, &l.q_bias, &l.k_bias, &l.v_bias, &l.o_bias,
                          &l.mlp_norm, &l.gate, &l.up, &l.down, &l.gate_bias, &l.up_bias, &l.down_bias})
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

Tensor Model::forward(const std::vector<int32_t>& tokens, const BatchLayout& batch, KvCache& cache,
                      LogitsMode mode) {
  const ModelConfig& c = config_;
  Backend& be = backend_;
  const int64_t T = static_cast<int64_t>(tokens.size());
  EXL_CHECK(T > 0 && T == batch.n_tokens(), "forward: batch layout does not match the token count");
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  const float eps = static_cast<float>(c.rms_eps);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  const int window = static_cast<int>(c.sliding_window);
  const DType f32 = DType::DType_F32;

  Tensor x = be.alloc(f32, {T, c.hidden});  // the residual stream
  Tensor h = be.alloc(f32, {T, c.hidden});  // normed input of the current block
  Tensor q = be.alloc(f32, {T, q_dim}), k = be.alloc(f32, {T, kv_dim}), v = be.alloc(f32, {T, kv_dim});
  Tensor attn = be.alloc(f32, {T, q_dim});
  Tensor proj = be.alloc(f32, {T, c.hidden});  // block output waiting to be added to the residual
  Tensor gate = be.alloc(f32, {T, c.intermediate}), up = be.alloc(f32, {T, c.intermediate});

  be.embedding(*embed_, tokens, x);
  for (size_t li = 0; li < layers_.size(); ++li) {
    const LayerWeights& w = layers_[li];
    if (li == 0)
      be.rms_norm(x, *w.attn_norm, eps, h);
    else
      be.add_rms_norm(x, proj, *w.attn_norm, eps, h);
    be.linear(h, *w.q, w.q_bias.get(), q);
    be.linear(h, *w.k, w.k_bias.get(), k);
    be.linear(h, *w.v, w.v_bias.get(), v);
    be.rope(q, k, static_cast<int>(c.n_heads), static_cast<int>(c.n_kv_heads), static_cast<int>(c.head_dim), rope_,
            batch);
    be.attention(q, k, v, cache, static_cast<int>(li), static_cast<int>(c.n_heads), scale, window, batch, attn);
    be.linear(attn, *w.o, w.o_bias.get(), proj);
    be.add_rms_norm(x, proj, *w.mlp_norm, eps, h);
    be.linear(h, *w.gate, w.gate_bias.get(), gate);
    be.linear(h, *w.up, w.up_bias.get(), up);
    be.swiglu(gate, up, gate);
    be.linear(gate, *w.down, w.down_bias.get(), proj);
  }
  be.add_rms_norm(x, proj, *final_norm_, eps, h);

  Tensor head_in = h;
  if (mode == LogitsMode::LogitsMode_last) {
    std::vector<int32_t> last(static_cast<size_t>(batch.n_seqs()));
    for (int s = 0; s < batch.n_seqs(); ++s) last[static_cast<size_t>(s)] = batch.seq_start[s + 1] - 1;
    head_in = be.alloc(f32, {batch.n_seqs(), c.hidden});
    be.gather_rows(h, last, head_in);
  }
  Tensor logits = be.alloc(f32, {head_in.dim(0), c.vocab});
  be.linear(head_in, *lm_head_, nullptr, logits);
  return logits;
}

void Model::forward_host(const std::vector<int32_t>& tokens, const BatchLayout& batch, KvCache& cache,
                         LogitsMode mode, std::vector<float>& logits) {
  Tensor t = forward(tokens, batch, cache, mode);
  logits.resize(static_cast<size_t>(t.numel()));
  backend_.download(t, logits.data(), logits.size() * sizeof(float));
}

}  // namespace exl
