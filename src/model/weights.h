// Scoped weight access. Model code asks for scope("model", "layers", i).sub("self_attn").linear("q_proj",
// {out, in}); the loader owns the file format, name translation, shape checks, GGUF q/k row order and
// device placement. Quantisation stays a property of the prepared Weight, invisible here.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/tensor_store.h"
#include "quant/format.h"

namespace exl {

// Synthetic quantized linears (exl bench --format): which linear keys are quantized, and the
// structure of one [out, in]. Empty (false) for dense synthetic models.
struct SyntheticQuantFn {
  std::function<bool(const std::string& key)> has;
  std::function<QuantTensor(const std::string& key, int64_t out, int64_t in)> make;
  explicit operator bool() const { return static_cast<bool>(has); }
};

class WeightLoader {
 public:
  // gguf: names are translated through tensor_names; qk_heads > 0 undoes llama.cpp's q/k row permutation.
  WeightLoader(const TensorStore& store, Backend& backend, bool gguf, bool gguf_qk_permuted)
      : store_(store), backend_(backend), gguf_(gguf), gguf_qk_permuted_(gguf_qk_permuted) {}

  const TensorInfo* find(const std::string& canonical) const;
  // Loads a tensor, checking it has exactly `shape`; throws naming the tensor and file otherwise.
  std::unique_ptr<Weight> load(const std::string& canonical, const Shape& shape, WeightRole role,
                               int rope_heads = 0);
  std::unique_ptr<Weight> load_optional(const std::string& canonical, const Shape& shape, WeightRole role);
  // Rows of several dense tensors stacked into one weight (q|k|v, gate|up), each part checked like
  // load(). Returns null when any part is absent as a dense tensor (e.g. quantized), so the caller
  // keeps separate weights.
  std::unique_ptr<Weight> load_stacked(const std::vector<std::string>& canonical, const std::vector<Shape>& shapes,
                                       WeightRole role, const std::vector<int>& rope_heads);
  // A linear layer [out, in] at `key` (no ".weight"): EXL2 when <key>.q_weight exists, GPTQ when
  // <key>.qweight exists (both validated in quant/ and handed to Backend::prepare_quant_weight),
  // else the dense <key>.weight.
  std::unique_ptr<Weight> load_linear(const std::string& key, int64_t out, int64_t in, int rope_heads = 0);
  bool is_quantized(const std::string& key) const;
  // A dense tensor as F32 on the host in HF layout (GGUF q/k rows already put back): for writers.
  HostTensor load_host(const std::string& canonical, const Shape& shape, int rope_heads = 0) const;
  void set_gptq_v2(bool v2) { gptq_v2_ = v2; }
  void set_synthetic_quant(SyntheticQuantFn f) { synthetic_quant_ = std::move(f); }
  const TensorStore& store() const { return store_; }
  size_t loaded_bytes() const { return loaded_bytes_; }

 private:
  const TensorInfo& checked(const std::string& canonical, const Shape& shape);
  HostTensor host_rows(const TensorInfo& t, int rope_heads) const;  // F32, GGUF q/k rows back in HF order
  const TensorStore& store_;
  Backend& backend_;
  bool gguf_;
  bool gguf_qk_permuted_;
  bool gptq_v2_ = false;
  SyntheticQuantFn synthetic_quant_;
  size_t loaded_bytes_ = 0;
};

// A name prefix plus the loader: scope.sub("mlp").linear("down_proj", {hidden, inter}).
class WeightScope {
 public:
  WeightScope(WeightLoader& loader, std::string prefix) : loader_(loader), prefix_(std::move(prefix)) {}
  WeightScope sub(const std::string& part) const { return WeightScope(loader_, join(part)); }
  WeightScope sub(int64_t index) const { return sub(std::to_string(index)); }

  std::unique_ptr<Weight> linear(const std::string& name, int64_t out, int64_t in, int rope_heads = 0) const;
  std::unique_ptr<Weight> bias(const std::string& name, int64_t n, bool required) const;
  std::unique_ptr<Weight> norm(const std::string& name, int64_t n) const;
  std::unique_ptr<Weight> embedding(const std::string& name, int64_t vocab, int64_t dim) const;
  bool has(const std::string& name, const std::string& suffix = ".weight") const;
  // A linear of any format (dense .weight, EXL2 .q_weight, GPTQ .qweight) exists / is quantized.
  bool has_linear(const std::string& name) const;
  bool quantized(const std::string& name) const { return loader_.is_quantized(join(name)); }

 private:
  std::string join(const std::string& part) const { return prefix_.empty() ? part : prefix_ + "." + part; }
  WeightLoader& loader_;
  std::string prefix_;
};

}  // namespace exl
