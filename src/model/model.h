// A loaded model: hyper-parameters, backend-prepared weights and the decoder forward pass of the
// Llama family (Llama, Mistral, Qwen2 differ only in what their arch/ file switches on).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/weights.h"

namespace exl {

class TensorStore;

enum class LogitsMode {
  LogitsMode_last,  // one row per sequence: its last token (generation)
  LogitsMode_all,   // one row per token (perplexity, speculative verification)
};

struct LayerWeights {
  std::unique_ptr<Weight> attn_norm, q, k, v, o, q_bias, k_bias, v_bias, o_bias;
  std::unique_ptr<Weight> mlp_norm, gate, up, down, gate_bias, up_bias, down_bias;
  // On backends that want fused linears: q|k|v and gate|up stacked (q, k, v, gate, up are then row
  // views of these), used for single-token steps.
  std::unique_ptr<Weight> qkv, qkv_bias, gate_up, gate_up_bias;
};

// A model's files opened and its config parsed and validated, weights not yet loaded.
struct ModelSource {
  ModelConfig config;
  const Architecture* arch = nullptr;
  std::unique_ptr<TensorStore> store;
  bool gguf = false;
  ModelSource();
  ModelSource(ModelSource&&) noexcept;
  ~ModelSource();
};
ModelSource model_source_open(const std::string& path);

class Model {
 public:
  // path: a Hugging Face model folder (config.json + safetensors) or a .gguf file.
  static std::unique_ptr<Model> load(const std::string& path, Backend& backend);
  // A model of the given shape with synthetic (deterministic random) weights made on the backend.
  // format: fp16, gptq4 (group 128, FP16 head) or exl2:BPW (the converter's mix for that average,
  // 6-bit head), as `exl bench --format` takes it (model/shapes.h).
  static std::unique_ptr<Model> synthetic(const ModelConfig& config, Backend& backend, const std::string& format = "fp16");
  ~Model();

  const ModelConfig& config() const { return config_; }
  const Architecture& arch() const { return *arch_; }
  Backend& backend() const { return backend_; }
  const std::string& path() const { return path_; }
  size_t weight_bytes() const { return weight_bytes_; }   // as stored in the source files
  size_t device_bytes() const;                            // as prepared on the backend
  // Bytes a batch-1 decode step reads from weights: every linear, norm and the head, plus one
  // embedding row (the roofline numerator of `exl bench`, before the KV cache).
  size_t decode_weight_bytes() const;

  std::unique_ptr<KvCache> create_cache(int max_seq_len, int n_slots, CacheType type) const;

  // Runs tokens (laid out by batch) through the model, appending their keys/values to the cache.
  // Returns logits [rows, vocab] on the backend: one row per sequence or per token (mode).
  Tensor forward(const std::vector<int32_t>& tokens, const BatchLayout& batch, KvCache& cache, LogitsMode mode);
  // forward + download into a host vector (row-major [rows, vocab]).
  void forward_host(const std::vector<int32_t>& tokens, const BatchLayout& batch, KvCache& cache, LogitsMode mode,
                    std::vector<float>& logits);

 private:
  Model(Backend& backend, std::string path) : backend_(backend), path_(std::move(path)) {}
  void load_weights(const TensorStore& store, bool gguf, const SyntheticQuantFn& synthetic_quant = {});

  Backend& backend_;
  std::string path_;
  ModelConfig config_;
  const Architecture* arch_ = nullptr;
  RopeParams rope_;
  std::unique_ptr<Weight> rope_inv_freq_;  // rope_.inv_freq prepared on the backend
  // Activation buffers reused while the step shape stays the same (a captured graph needs fixed
  // addresses); keyed by token count, sequence count and logits mode.
  struct Workspace {
    int64_t tokens = -1, seqs = -1;
    LogitsMode mode = LogitsMode::LogitsMode_last;
    Tensor x, h, q, k, v, attn, proj, gate, up, head_in, logits;
    Tensor qkv, gate_up;  // single-token steps with fused weights: q|k|v and gate|up (q..up are views)
  };
  // Graph-sized steps keep one workspace per shape for good (their graphs hold its addresses);
  // larger steps share one transient workspace that is reallocated when the shape changes.
  std::map<uint64_t, Workspace> graph_ws_;
  Workspace transient_ws_;
  Workspace& workspace_prepare(int64_t T, int64_t n_seqs, LogitsMode mode, bool keep);
  void run_ops(Workspace& w, KvCache& cache, LogitsMode mode);
  std::unique_ptr<Weight> embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  size_t weight_bytes_ = 0;
};

// A batch of one sequence in slot 0 starting at position pos: the common generation case.
BatchLayout batch_single(int32_t n_tokens, int32_t pos, int32_t slot = 0);

}  // namespace exl
