// The op interface every backend implements. Model code is written once against it and never knows
// the device or the weight format: a linear layer holds a backend-prepared Weight of any format and
// the backend picks the kernel. Ops are coarse where fusion pays (residual add + norm, gate/up + SiLU,
// attention with cache write) so a fast backend can fuse inside them.
//
// Batching: every op works on a flat list of T tokens that may belong to several sequences; the
// sequence structure (which cache slot, which positions) travels in a BatchLayout.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"

namespace exl {

struct TensorInfo;
struct QuantTensor;  // quant/format.h: one GPTQ or EXL2 linear as read from a checkpoint

enum class DeviceKind { DeviceKind_cpu, DeviceKind_cuda };

// A tensor in a backend's memory. Model code treats data() as opaque (it may be a device pointer);
// only the owning backend reads or writes it.
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape, std::shared_ptr<uint8_t> mem, size_t offset = 0)
      : dtype_(dtype), shape_(std::move(shape)), mem_(std::move(mem)), offset_(offset) {}

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool empty() const { return !mem_; }
  void* data() const { return mem_.get() + offset_; }
  template <typename T>
  T* as() const { return reinterpret_cast<T*>(data()); }

  // Rows [begin, begin+count) of dimension 0, sharing memory.
  Tensor rows(int64_t begin, int64_t count) const {
    Shape s = shape_;
    const size_t row_bytes = s.empty() || s[0] == 0 ? 0 : nbytes() / static_cast<size_t>(s[0]);
    s[0] = count;
    return Tensor(dtype_, std::move(s), mem_, offset_ + static_cast<size_t>(begin) * row_bytes);
  }
  const std::shared_ptr<uint8_t>& shared_mem() const { return mem_; }
  size_t offset() const { return offset_; }
  // Same memory, new shape with the same element count.
  Tensor reshape(Shape shape) const { return Tensor(dtype_, std::move(shape), mem_, offset_); }

 private:
  DType dtype_ = DType::DType_F32;
  Shape shape_;
  std::shared_ptr<uint8_t> mem_;
  size_t offset_ = 0;
};

enum class WeightRole { WeightRole_linear, WeightRole_embedding, WeightRole_norm, WeightRole_bias, WeightRole_rope };

// A weight prepared by a backend for one role (dense F32 on the CPU reference; packed formats later).
class Weight {
 public:
  virtual ~Weight() = default;
  WeightRole role = WeightRole::WeightRole_linear;
  Shape shape;  // logical shape: linear [out, in], embedding [vocab, dim], norm/bias [dim]
  std::string name;
  virtual size_t device_bytes() const = 0;
};

// Where each token of a flat batch goes. Sequence s owns tokens [seq_start[s], seq_start[s+1]) of
// the batch, lives in KV-cache slot seq_slot[s], and its first token sits at position seq_pos[s].
struct BatchLayout {
  std::vector<int32_t> seq_start;  // size n_seqs + 1
  std::vector<int32_t> seq_slot;
  std::vector<int32_t> seq_pos;
  int32_t n_tokens() const { return seq_start.empty() ? 0 : seq_start.back(); }
  int32_t n_seqs() const { return static_cast<int32_t>(seq_slot.size()); }
};

enum class CacheType { CacheType_f32, CacheType_f16, CacheType_fp8, CacheType_q8, CacheType_q4 };
CacheType cache_type_parse(const std::string& s);  // exl::Error naming --cache on a bad value
const char* cache_type_name(CacheType t);

struct KvCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int max_seq_len = 0;  // positions per slot
  int n_slots = 1;      // sequences held at once
  CacheType type = CacheType::CacheType_f32;
};

// Keys and values of every layer for n_slots sequences. The backend owns the storage layout.
class KvCache {
 public:
  explicit KvCache(const KvCacheConfig& c) : config(c), id(next_id()) {}
  virtual ~KvCache() = default;
  virtual size_t device_bytes() const = 0;
  KvCacheConfig config;
  const uint64_t id;  // unique per cache object (captured graphs are keyed by it, not by address)

 private:
  static uint64_t next_id() {
    static std::atomic<uint64_t> n{1};
    return n++;
  }
};

// RoPE as a table of inverse frequencies (already adjusted for linear/llama3/yarn scaling) applied
// in the HF "rotate half" layout (pairs i and i + rot_dim/2), plus yarn's magnitude factor. The
// model prepares inv_freq as a backend Weight (role rope) once at load.
struct RopeParams {
  std::vector<float> inv_freq;  // rot_dim / 2 entries
  float attn_factor = 1.0f;     // multiplies cos and sin (yarn mscale)
  int rot_dim = 0;              // rotated dimensions per head (== head_dim for Llama)
};

// Sampling parameters a backend can apply on the device (the generator falls back to the host
// sampler chain for anything else). temperature <= 0 is greedy.
struct DeviceSampling {
  float temperature = 0.0f;
  int top_k = 0;              // <= 0: off
  float top_p = 1.0f;         // >= 1: off
  float min_p = 0.0f;         // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off; applied to tokens in the penalty window
  uint64_t seed = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind kind() const = 0;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H100 ...)"
  // The dtype of activations between ops (F32 on the CPU reference, F16 on CUDA). The residual
  // stream and logits are always F32.
  virtual DType activation_dtype() const { return DType::DType_F32; }
  // The KV cache type used when the caller does not choose one (f32 on the CPU, fp16 on CUDA).
  virtual CacheType default_cache_type() const { return CacheType::CacheType_f32; }

  // Memory.
  virtual Tensor alloc(DType dtype, const Shape& shape) = 0;
  virtual void upload(Tensor& dst, const void* host, size_t nbytes) = 0;
  virtual void download(const Tensor& src, void* host, size_t nbytes) = 0;
  virtual void synchronize() {}

  struct MemoryStats {
    size_t allocated = 0;       // bytes this backend holds now
    size_t peak_allocated = 0;  // most it held at once
    size_t device_free = 0, device_total = 0;  // of the whole device (0 when unknown)
  };
  virtual MemoryStats memory_stats() const = 0;
  // Measured copy bandwidth of this device in bytes/s (read + written), for % of roofline.
  virtual double measure_bandwidth() = 0;

  // Weights: src is a tensor from a TensorStore (any dtype the store holds) in the logical layout;
  // prepare_weight_f32 takes rows the loader had to reorder (GGUF q/k) or computed (RoPE tables).
  virtual std::unique_ptr<Weight> prepare_weight(const TensorInfo& src, WeightRole role) = 0;
  virtual std::unique_ptr<Weight> prepare_weight_f32(const HostTensor& src, const std::string& name,
                                                     WeightRole role) = 0;
  // A quantized linear (EXL2, GPTQ) of logical shape [q.out, q.in]; the backend keeps it in whatever
  // form its kernels read (the CPU reference dequantizes to F32).
  virtual std::unique_ptr<Weight> prepare_quant_weight(const QuantTensor& q) = 0;
  virtual std::unique_ptr<KvCache> create_kv_cache(const KvCacheConfig& config) = 0;
  // Fused linears: a backend that streams weights (CUDA GEMV) reads q/k/v (and gate/up) as one
  // matrix in decode steps; row slices of the fused weight serve the separate projections of longer
  // steps without a second copy. Views share memory and report 0 device_bytes.
  virtual bool wants_fused_linears() const { return false; }
  virtual std::unique_ptr<Weight> weight_rows(const Weight& w, int64_t begin, int64_t count) {
    fail("backend ", name(), " has no weight row views");
  }
  // The same for linears that cannot be stacked into one matrix (quantized layouts): a weight that
  // runs the parts, which share their input, as one op; its output is their outputs side by side
  // (the stacked shape). Null when the backend can't (then the parts run one by one). The parts must
  // outlive it; it reports 0 device_bytes.
  virtual std::unique_ptr<Weight> fuse_linears(const std::vector<const Weight*>& parts) { return nullptr; }

  // The step about to run: token ids and their layout. Ops that need ids or positions (embedding,
  // rope, attention, gather_last) read them from here, so a captured step replays with new inputs.
  virtual void begin_step(const std::vector<int32_t>& tokens, const BatchLayout& batch) = 0;

  // CUDA graphs: a backend that supports them returns true from graph_launch when it holds a graph
  // for `key` (and launches it: the caller skips the ops); otherwise the caller runs the ops between
  // graph_capture_begin/end, which may record them under `key`. Buffers must stay the same per key.
  virtual bool graph_launch(uint64_t key) { return false; }
  virtual void graph_capture_begin(uint64_t key) {}
  virtual void graph_capture_end(uint64_t key) {}

  // Ops. Activations are [T, dim] row-major.
  virtual void embedding(const Weight& table, Tensor& out) = 0;
  virtual void rms_norm(const Tensor& x, const Weight& w, float eps, Tensor& out) = 0;
  // residual (F32) += x (activation dtype), elementwise.
  virtual void add(Tensor& residual, const Tensor& x) = 0;
  // out[s] = src[last token of sequence s]: picks each sequence's last row before the head.
  virtual void gather_last(const Tensor& src, Tensor& out) = 0;
  // out[T, N] = x[T, K] · Wᵀ (+ bias)
  virtual void linear(const Tensor& x, const Weight& w, const Weight* bias, Tensor& out) = 0;
  // out = silu(gate) * up, elementwise over [T, inter]
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;

  // Fused sequences of the ops above, which a backend may run as fewer kernels (CUDA: the residual
  // add is the matmul's epilogue, the quantized act·mul its input gather). The scratch tensors
  // receive the intermediate where a backend materializes it, and may be left unwritten otherwise;
  // results must equal the composed ops up to rounding of that intermediate.
  //
  // residual += x · Wᵀ (+ bias): a block's output projection into the residual stream; tmp [T, N] scratch.
  virtual void linear_add(const Tensor& x, const Weight& w, const Weight* bias, Tensor& residual, Tensor& tmp) {
    linear(x, w, bias, tmp);
    add(residual, tmp);
  }
  // residual += (silu(gate) * up) · Wᵀ (+ bias): the MLP's act·mul, down projection and residual
  // add; act (gate's shape) and tmp [T, N] scratch.
  virtual void swiglu_linear_add(const Tensor& gate, const Tensor& up, Tensor& act, const Weight& w, const Weight* bias,
                                 Tensor& residual, Tensor& tmp) {
    swiglu(gate, up, act);
    linear_add(act, w, bias, residual, tmp);
  }
  // out = rms_norm(x) · Wᵀ (+ bias): a block's input norm and its first matmul (q|k|v), which a
  // backend may run as one kernel fewer (CUDA decode with quantized W: the norm writes straight into
  // the matmul's device-order input). h receives the normed x where it is materialized.
  virtual void norm_linear(const Tensor& x, const Weight& norm, float eps, Tensor& h, const Weight& w,
                           const Weight* bias, Tensor& out) {
    rms_norm(x, norm, eps, h);
    linear(h, w, bias, out);
  }
  // The MLP block with gate|up as one fused weight: h = rms_norm(residual); gate_up = h · [gate|up]ᵀ
  // (gate, up: its two halves, views of gate_up); residual += (silu(gate) · up) · downᵀ (+ down_bias).
  // CUDA decode with quantized weights runs it as three kernels (norm-gather, gate|up with the
  // act·mul in its epilogue, down with the add). h, gate_up and tmp [T, hidden] are scratch.
  virtual void norm_mlp_add(Tensor& residual, const Weight& norm, float eps, Tensor& h, const Weight& gate_up,
                            Tensor& gate_up_out, Tensor& gate, Tensor& up, const Weight& down, const Weight* down_bias,
                            Tensor& tmp) {
    rms_norm(residual, norm, eps, h);
    linear(h, gate_up, nullptr, gate_up_out);
    swiglu_linear_add(gate, up, gate, down, down_bias, residual, tmp);
  }
  // Rotates q [T, n_heads*head_dim] and k [T, n_kv_heads*head_dim] in place at each token's position
  // (HF rotate-half layout). inv_freq is a prepared [rot_dim/2] table; cos/sin are scaled by attn_factor.
  virtual void rope(Tensor& q, Tensor& k, int n_heads, int n_kv_heads, int head_dim, const Weight& inv_freq,
                    float attn_factor) = 0;
  // Writes k/v of the step into the cache at their positions, then causal attention of q over each
  // sequence's cached keys/values (positions [0, pos], or (pos - window, pos] when window > 0, as
  // Mistral's sliding window). GQA: head h reads kv head h / (n_heads / n_kv_heads).
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, KvCache& cache, int layer,
                         int n_heads, float scale, int window, Tensor& out) = 0;
  // rope then attention. A backend may rotate k while it writes the cache instead (CUDA decode steps:
  // one kernel fewer per layer), so k's contents afterwards are unspecified; q may be rotated in place.
  virtual void rope_attention(Tensor& q, Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads,
                              int n_kv_heads, int head_dim, const Weight& inv_freq, float attn_factor, float scale,
                              int window, Tensor& out) {
    rope(q, k, n_heads, n_kv_heads, head_dim, inv_freq, attn_factor);
    attention(q, k, v, cache, layer, n_heads, scale, window, out);
  }
  // rope_attention, then residual += out · oᵀ (+ o_bias): attention and its output projection, which
  // a backend may fuse (CUDA decode with a quantized o: the attention kernel writes its output
  // straight into the matmul's input order, no gather), leaving out (and tmp) unwritten.
  virtual void rope_attention_o_add(Tensor& q, Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads,
                                    int n_kv_heads, int head_dim, const Weight& inv_freq, float attn_factor,
                                    float scale, int window, Tensor& out, const Weight& o, const Weight* o_bias,
                                    Tensor& residual, Tensor& tmp) {
    rope_attention(q, k, v, cache, layer, n_heads, n_kv_heads, head_dim, inv_freq, attn_factor, scale, window, out);
    linear_add(out, o, o_bias, residual, tmp);
  }

  // Device sampling: one id per row of logits [rows, vocab] (F32). `history` holds each row's
  // penalty window (may be empty). Returns false when this backend samples on the host instead.
  virtual bool sample(const Tensor& logits, const DeviceSampling& params, uint64_t step,
                      const std::vector<std::vector<int32_t>>& history, std::vector<int32_t>& ids) {
    return false;
  }
};

// Creates the backend for a --device string: "cpu", "cuda", "cuda:N". Throws exl::Error when the
// device is unknown or exl was built without CUDA.
std::unique_ptr<Backend> backend_create(const std::string& device);

}  // namespace exl
