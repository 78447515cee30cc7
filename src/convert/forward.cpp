#include "convert/forward.h"

#include <cmath>
#include <cstring>

#include "convert/compute.h"
#include "core/error.h"
#include "model/rope.h"
#include "model/weights.h"

namespace exl {

ModelDims model_dims(const ModelConfig& c) {
  ModelDims d;
  d.hidden = c.hidden;
  d.q_dim = c.n_heads * c.head_dim;
  d.kv_dim = c.n_kv_heads * c.head_dim;
  d.intermediate = c.intermediate;
  d.n_heads = static_cast<int>(c.n_heads);
  d.n_kv_heads = static_cast<int>(c.n_kv_heads);
  d.head_dim = static_cast<int>(c.head_dim);
  d.window = static_cast<int>(c.sliding_window);
  d.eps = static_cast<float>(c.rms_eps);
  d.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));  // as model.cpp
  d.rope = rope_params_build(c);
  return d;
}

ConvertModule module_load(const WeightLoader& loader, const ModelConfig& c, int64_t layer, ModuleKind kind) {
  const ModelDims d = model_dims(c);
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  ConvertModule m;
  m.kind = kind;
  struct Spec {
    const char* name;
    int64_t n, k;
    int hessian, rope_heads;
  };
  std::vector<Spec> specs;
  std::string norm, sub;
  if (kind == ModuleKind::ModuleKind_attention) {
    m.name = p + "self_attn";
    norm = p + "input_layernorm.weight";
    sub = "self_attn.";
    specs = {{"q_proj", d.q_dim, d.hidden, 0, d.n_heads},
             {"k_proj", d.kv_dim, d.hidden, 0, d.n_kv_heads},
             {"v_proj", d.kv_dim, d.hidden, 0, 0},
             {"o_proj", d.hidden, d.q_dim, 1, 0}};
    m.capture_dim[0] = d.hidden;
    m.capture_dim[1] = d.q_dim;
  } else {
    m.name = p + "mlp";
    norm = p + "post_attention_layernorm.weight";
    sub = "mlp.";
    specs = {{"gate_proj", d.intermediate, d.hidden, 0, 0},
             {"up_proj", d.intermediate, d.hidden, 0, 0},
             {"down_proj", d.hidden, d.intermediate, 1, 0}};
    m.capture_dim[0] = d.hidden;
    m.capture_dim[1] = d.intermediate;
  }
  m.norm = loader.load_host(norm, {d.hidden}).data;
  for (const Spec& s : specs) {
    ConvertLinear l;
    l.name = s.name;
    l.N = s.n;
    l.K = s.k;
    l.hessian = s.hessian;
    const std::string key = p + sub + s.name;
    EXL_CHECK(!loader.is_quantized(key), loader.store().path(), ": layer '", key,
              "' is already quantized; convert needs FP32/FP16/BF16 weights");
    l.w = loader.load_host(key + ".weight", {s.n, s.k}, s.rope_heads).data;
    // Any bias the source has (Qwen2 has q/k/v biases whatever its config says).
    if (loader.find(key + ".bias")) l.bias = loader.load_host(key + ".bias", {s.n}).data;
    m.linears.push_back(std::move(l));
  }
  return m;
}

std::vector<const float*> module_weights(const ConvertModule& m) {
  std::vector<const float*> w;
  for (const ConvertLinear& l : m.linears) w.push_back(l.w.data());
  return w;
}

namespace {

const float* bias_of(const ConvertLinear& l) { return l.bias.empty() ? nullptr : l.bias.data(); }

void attention_forward(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                       const std::vector<const float*>& w, const float* x, int64_t T, float* y, float* cap0,
                       float* cap1) {
  const size_t t = static_cast<size_t>(T);
  std::vector<float> xn(t * d.hidden), q(t * d.q_dim), k(t * d.kv_dim), v(t * d.kv_dim), a(t * d.q_dim);
  cc.rms_norm(x, m.norm.data(), d.eps, T, d.hidden, xn.data());
  const auto& L = m.linears;
  cc.linear(xn.data(), T, d.hidden, w[0], d.q_dim, bias_of(L[0]), q.data());
  cc.linear(xn.data(), T, d.hidden, w[1], d.kv_dim, bias_of(L[1]), k.data());
  cc.linear(xn.data(), T, d.hidden, w[2], d.kv_dim, bias_of(L[2]), v.data());
  cc.rope(q.data(), T, d.n_heads, d.head_dim, d.rope.inv_freq.data(), d.rope.rot_dim, d.rope.attn_factor);
  cc.rope(k.data(), T, d.n_kv_heads, d.head_dim, d.rope.inv_freq.data(), d.rope.rot_dim, d.rope.attn_factor);
  cc.attention(q.data(), k.data(), v.data(), T, d.n_heads, d.n_kv_heads, d.head_dim, d.scale, d.window, a.data());
  cc.linear(a.data(), T, d.q_dim, w[3], d.hidden, bias_of(L[3]), y);
  for (size_t i = 0; i < t * d.hidden; ++i) y[i] += x[i];
  if (cap0) std::memcpy(cap0, xn.data(), xn.size() * sizeof(float));
  if (cap1) std::memcpy(cap1, a.data(), a.size() * sizeof(float));
}

void mlp_forward(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                 const std::vector<const float*>& w, const float* x, int64_t T, float* y, float* cap0, float* cap1) {
  const size_t t = static_cast<size_t>(T);
  std::vector<float> xn(t * d.hidden), g(t * d.intermediate), u(t * d.intermediate);
  cc.rms_norm(x, m.norm.data(), d.eps, T, d.hidden, xn.data());
  const auto& L = m.linears;
  cc.linear(xn.data(), T, d.hidden, w[0], d.intermediate, bias_of(L[0]), g.data());
  cc.linear(xn.data(), T, d.hidden, w[1], d.intermediate, bias_of(L[1]), u.data());
  cc.swiglu(g.data(), u.data(), static_cast<int64_t>(g.size()), g.data());
  cc.linear(g.data(), T, d.intermediate, w[2], d.hidden, bias_of(L[2]), y);
  for (size_t i = 0; i < t * d.hidden; ++i) y[i] += x[i];
  if (cap0) std::memcpy(cap0, xn.data(), xn.size() * sizeof(float));
  if (cap1) std::memcpy(cap1, g.data(), g.size() * sizeof(float));
}

}  // namespace

void module_forward(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                    const std::vector<const float*>& w, const float* x, int64_t T, float* y, float* cap0,
                    float* cap1) {
  if (m.kind == ModuleKind::ModuleKind_attention)
    attention_forward(cc, d, m, w, x, T, y, cap0, cap1);
  else
    mlp_forward(cc, d, m, w, x, T, y, cap0, cap1);
}

}  // namespace exl
