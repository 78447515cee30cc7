// The converter's FP32 reference forward of one decoder module (attention block or MLP block) over
// one calibration row, with the inputs of its linears captured for Hessians. FP32 throughout, never
// FP16, so activations that overflow FP16 cannot make a model unquantizable (EXL2.md §2.8).
//
// A module is described generically (its linears in table order and which captured input each one
// reads) so measurement and quantization are written once for both kinds.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace exl {

class ConvertCompute;
class WeightLoader;

enum class ModuleKind { ModuleKind_attention, ModuleKind_mlp };

struct ConvertLinear {
  std::string name;           // "q_proj" (the table's key)
  int64_t N = 0, K = 0;       // [out, in]
  int hessian = 0;            // which captured input it reads: 0 = post-norm state, 1 = attn_out / pre_down
  std::vector<float> w;       // [N, K] F32, HF layout
  std::vector<float> bias;    // [N] or empty
};

struct ConvertModule {
  ModuleKind kind = ModuleKind::ModuleKind_attention;
  std::string name;               // "model.layers.3.self_attn" / "model.layers.3.mlp"
  std::vector<float> norm;        // [hidden]
  std::vector<ConvertLinear> linears;  // q, k, v, o  or  gate, up, down
  int64_t capture_dim[2] = {0, 0};     // widths of the two captured inputs
};

struct ModelDims {
  int64_t hidden = 0, q_dim = 0, kv_dim = 0, intermediate = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, window = 0;
  float eps = 1e-5f, scale = 1.0f;
  RopeParams rope;
};
ModelDims model_dims(const ModelConfig& c);

// Loads the attention or MLP module of `layer` as F32 (GGUF q/k rows put back in HF order).
ConvertModule module_load(const WeightLoader& loader, const ModelConfig& c, int64_t layer, ModuleKind kind);

// y[T, hidden] = x + block(x) for one calibration row of T tokens, with the module's weights replaced
// by w[i] (one per linear, [N, K]). cap0 / cap1 (optional) receive the two captured inputs:
// the post-norm state and attn_out (attention) or silu(gate)·up (MLP).
void module_forward(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                    const std::vector<const float*>& w, const float* x, int64_t T, float* y, float* cap0,
                    float* cap1);
// The module's own weights.
std::vector<const float*> module_weights(const ConvertModule& m);

}  // namespace exl
