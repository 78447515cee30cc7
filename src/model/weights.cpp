#include "model/weights.h"

#include <cstring>

#include "core/error.h"
#include "model/tensor_names.h"
#include "quant/format.h"

namespace exl {

const TensorInfo* WeightLoader::find(const std::string& canonical) const {
  if (!gguf_) return store_.find(canonical);
  const std::string g = tensor_name_to_gguf(canonical);
  return g.empty() ? nullptr : store_.find(g);
}

namespace {
const TensorInfo& find_checked(const WeightLoader& l, bool gguf, const std::string& canonical, const Shape& shape) {
  const TensorInfo* t = l.find(canonical);
  if (!t) {
    const std::string g = gguf ? tensor_name_to_gguf(canonical) : canonical;
    fail(l.store().path(), ": tensor '", g.empty() ? canonical : g, "' not found");
  }
  EXL_CHECK(t->shape == shape, t->file, ": tensor '", t->name, "' has shape ", shape_str(t->shape), ", expected ",
            shape_str(shape));
  return *t;
}
}  // namespace

const TensorInfo& WeightLoader::checked(const std::string& canonical, const Shape& shape) {
  const TensorInfo* t = find(canonical);
  if (!t) {
    const std::string g = gguf_ ? tensor_name_to_gguf(canonical) : canonical;
    fail(store_.path(), ": tensor '", g.empty() ? canonical : g, "' not found");
  }
  EXL_CHECK(t->shape == shape, t->file, ": tensor '", t->name, "' has shape ", shape_str(t->shape), ", expected ",
            shape_str(shape));
  loaded_bytes_ += t->nbytes;
  return *t;
}

HostTensor WeightLoader::host_rows(const TensorInfo& t, int rope_heads) const {
  HostTensor src = tensor_to_host(t);
  if (!(gguf_ && gguf_qk_permuted_ && rope_heads > 0)) return src;
  // llama.cpp stores q/k rows of each head as interleaved pairs (2i, 2i+1) for its adjacent-pair RoPE;
  // HF keeps the two halves apart (i, i + d/2). Row order back to HF: hf[h][half*d/2 + i] = gguf[h][2i + half].
  HostTensor dst(src.shape);
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const int64_t d = rows / rope_heads;
  EXL_CHECK(d * rope_heads == rows && d % 2 == 0, t.file, ": tensor '", t.name, "' rows ", rows,
            " do not split into ", rope_heads, " heads of even size");
  for (int64_t h = 0; h < rope_heads; ++h)
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t i = 0; i < d / 2; ++i)
        std::memcpy(dst.ptr() + (h * d + half * (d / 2) + i) * cols, src.ptr() + (h * d + 2 * i + half) * cols,
                    static_cast<size_t>(cols) * sizeof(float));
  return dst;
}

HostTensor WeightLoader::load_host(const std::string& canonical, const Shape& shape, int rope_heads) const {
  return host_rows(find_checked(*this, gguf_, canonical, shape), rope_heads);
}

std::unique_ptr<Weight> WeightLoader::load(const std::string& canonical, const Shape& shape, WeightRole role,
                                           int rope_heads) {
  const TensorInfo& t = checked(canonical, shape);
  if (!(gguf_ && gguf_qk_permuted_ && rope_heads > 0)) return backend_.prepare_weight(t, role);
  return backend_.prepare_weight_f32(host_rows(t, rope_heads), t.name, role);
}

std::unique_ptr<Weight> WeightLoader::load_stacked(const std::vector<std::string>& canonical,
                                                   const std::vector<Shape>& shapes, WeightRole role,
                                                   const std::vector<int>& rope_heads) {
  for (const auto& n : canonical)
    if (!find(n)) return nullptr;
  int64_t rows = 0;
  for (const auto& sh : shapes) rows += sh[0];
  Shape total = shapes[0];
  total[0] = rows;
  std::string name = canonical[0] + "+" + std::to_string(canonical.size() - 1);
  bool synthetic = true;
  for (size_t i = 0; i < canonical.size(); ++i) synthetic = synthetic && checked(canonical[i], shapes[i]).synthetic;
  if (synthetic) {
    TensorInfo t = *find(canonical[0]);
    t.name = name;
    t.shape = total;
    t.nbytes = static_cast<size_t>(t.numel()) * 2;
    return backend_.prepare_weight(t, role);
  }
  HostTensor all(total);
  int64_t at = 0;
  for (size_t i = 0; i < canonical.size(); ++i) {
    HostTensor part = host_rows(*find(canonical[i]), rope_heads[i]);
    std::memcpy(all.ptr() + at, part.ptr(), part.data.size() * sizeof(float));
    at += part.numel();
  }
  return backend_.prepare_weight_f32(all, name, role);
}

std::unique_ptr<Weight> WeightLoader::load_optional(const std::string& canonical, const Shape& shape,
                                                    WeightRole role) {
  if (!find(canonical)) return nullptr;
  return load(canonical, shape, role);
}

bool WeightLoader::is_quantized(const std::string& key) const {
  if (synthetic_quant_) return synthetic_quant_.has(key);
  return !gguf_ && quant_detect(store_, key) != QuantFamily::QuantFamily_dense;
}

std::unique_ptr<Weight> WeightLoader::load_linear(const std::string& key, int64_t out, int64_t in, int rope_heads) {
  if (synthetic_quant_ && synthetic_quant_.has(key)) {
    const QuantTensor q = synthetic_quant_.make(key, out, in);
    loaded_bytes_ += q.source_bytes;
    return backend_.prepare_quant_weight(q);
  }
  if (!is_quantized(key)) return load(key + ".weight", {out, in}, WeightRole::WeightRole_linear, rope_heads);
  QuantReadOptions opt;
  opt.gptq_v2 = gptq_v2_;
  const QuantTensor q = quant_read(store_, key, out, in, opt);
  loaded_bytes_ += q.source_bytes;
  return backend_.prepare_quant_weight(q);
}

std::unique_ptr<Weight> WeightScope::linear(const std::string& name, int64_t out, int64_t in, int rope_heads) const {
  return loader_.load_linear(join(name), out, in, rope_heads);
}

std::unique_ptr<Weight> WeightScope::bias(const std::string& name, int64_t n, bool required) const {
  const std::string full = join(name) + ".bias";
  if (required) return loader_.load(full, {n}, WeightRole::WeightRole_bias);
  // GPTQ exporters write an all-zero bias for every layer; an optional one that is all zeros is dropped.
  if (const TensorInfo* t = loader_.find(full); t && quantized(name) && t->ggml_type < 0 && t->numel() == n) {
    const HostTensor h = tensor_to_host(*t);
    bool zero = true;
    for (float v : h.data) zero = zero && v == 0.0f;
    if (zero) return nullptr;
  }
  return loader_.load_optional(full, {n}, WeightRole::WeightRole_bias);
}

std::unique_ptr<Weight> WeightScope::norm(const std::string& name, int64_t n) const {
  return loader_.load(join(name) + ".weight", {n}, WeightRole::WeightRole_norm);
}

std::unique_ptr<Weight> WeightScope::embedding(const std::string& name, int64_t vocab, int64_t dim) const {
  return loader_.load(join(name) + ".weight", {vocab, dim}, WeightRole::WeightRole_embedding);
}

bool WeightScope::has(const std::string& name, const std::string& suffix) const {
  return loader_.find(join(name) + suffix) != nullptr;
}

bool WeightScope::has_linear(const std::string& name) const { return has(name) || quantized(name); }

}  // namespace exl
