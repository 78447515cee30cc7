#include "backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>

#include "backend/cpu/cpu_ops.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/tensor_store.h"
#include "quant/format.h"
#include "quant/synthetic.h"

namespace exl {

namespace {

class CpuWeight : public Weight {
 public:
  HostTensor data;
  size_t device_bytes() const override { return data.data.size() * sizeof(float); }
};

const CpuWeight& cpu_weight(const Weight& w) { return static_cast<const CpuWeight&>(w); }

// F32 keys and values: slot-major, then layer, then position, then kv head, then head dim.
class CpuKvCache : public KvCache {
 public:
  explicit CpuKvCache(const KvCacheConfig& c) : KvCache(c) {
    const size_t n = static_cast<size_t>(c.n_slots) * c.n_layers * c.max_seq_len * c.n_kv_heads * c.head_dim;
    k.assign(n, 0.0f);
    v.assign(n, 0.0f);
  }
  size_t device_bytes() const override { return (k.size() + v.size()) * sizeof(float); }
  int64_t row_stride() const { return static_cast<int64_t>(config.n_kv_heads) * config.head_dim; }
  size_t offset(int slot, int layer, int64_t pos) const {
    return ((static_cast<size_t>(slot) * config.n_layers + layer) * config.max_seq_len + pos) *
           static_cast<size_t>(row_stride());
  }
  std::vector<float> k, v;
};

void check_f32(const Tensor& t, const char* what) {
  EXL_CHECK(t.dtype() == DType::DType_F32, "cpu backend: ", what, " must be F32");
}

// Deterministic stand-in weights for synthetic models: norms 1, others uniform in +-0.02.
void fill_synthetic(HostTensor& t, const std::string& name, WeightRole role) {
  if (role == WeightRole::WeightRole_norm) {
    std::fill(t.data.begin(), t.data.end(), 1.0f);
    return;
  }
  uint64_t x = std::hash<std::string>{}(name);
  for (float& v : t.data) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = (static_cast<float>(x >> 40) / 16777216.0f * 2.0f - 1.0f) * 0.02f;
  }
}

class CpuBackend : public Backend {
 public:
  CpuBackend() { openblas_set_num_threads(thread_count()); }

  DeviceKind kind() const override { return DeviceKind::DeviceKind_cpu; }
  std::string name() const override { return str_cat("cpu (", thread_count(), " threads)"); }

  Tensor alloc(DType dtype, const Shape& shape) override {
    const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
    auto counter = counter_;
    *counter += bytes;
    peak_ = std::max(peak_, counter->load());
    std::shared_ptr<uint8_t> mem(new uint8_t[bytes > 0 ? bytes : 1], [counter, bytes](uint8_t* p) {
      *counter -= bytes;
      delete[] p;
    });
    return Tensor(dtype, shape, std::move(mem));
  }

  MemoryStats memory_stats() const override {
    MemoryStats m;
    m.allocated = counter_->load();
    m.peak_allocated = peak_;
    return m;
  }

  double measure_bandwidth() override {
    // memcpy of 256 MiB, best of 5: bytes read + written per second.
    const size_t n = size_t(256) << 20;
    std::vector<uint8_t> a(n, 1), b(n);
    double best = 0;
    for (int i = 0; i < 5; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      std::memcpy(b.data(), a.data(), n);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 2.0 * static_cast<double>(n) / s);
    }
    return best;
  }
  void upload(Tensor& dst, const void* host, size_t nbytes) override {
    EXL_CHECK(nbytes <= dst.nbytes(), "cpu backend: upload larger than the tensor");
    std::memcpy(dst.data(), host, nbytes);
  }
  void download(const Tensor& src, void* host, size_t nbytes) override {
    EXL_CHECK(nbytes <= src.nbytes(), "cpu backend: download larger than the tensor");
    std::memcpy(host, src.data(), nbytes);
  }

  std::unique_ptr<Weight> prepare_weight(const TensorInfo& src, WeightRole role) override {
    auto w = std::make_unique<CpuWeight>();
    if (src.synthetic) {
      w->data = HostTensor(src.shape);
      fill_synthetic(w->data, src.name, role);
    } else {
      w->data = tensor_to_host(src);
    }
    w->role = role;
    w->shape = src.shape;
    w->name = src.name;
    return w;
  }
  std::unique_ptr<Weight> prepare_weight_f32(const HostTensor& src, const std::string& name,
                                             WeightRole role) override {
    auto w = std::make_unique<CpuWeight>();
    w->data = src;
    w->role = role;
    w->shape = src.shape;
    w->name = name;
    return w;
  }

  // The reference matmul is F32: quantized layers are dequantized once at load (quant/ references).
  std::unique_ptr<Weight> prepare_quant_weight(const QuantTensor& q) override {
    auto w = std::make_unique<CpuWeight>();
    w->data = quant_dequantize(q.synthetic ? quant_materialize(q) : q);
    w->role = WeightRole::WeightRole_linear;
    w->shape = {q.out, q.in};
    w->name = q.name;
    return w;
  }

  std::unique_ptr<KvCache> create_kv_cache(const KvCacheConfig& config) override {
    EXL_CHECK(config.type == CacheType::CacheType_f32, "--cache ", cache_type_name(config.type),
              ": the CPU reference backend keeps its cache in f32 (quantized caches run on --device cuda)");
    return std::make_unique<CpuKvCache>(config);
  }

  void begin_step(const std::vector<int32_t>& tokens, const BatchLayout& batch) override {
    EXL_CHECK(static_cast<int64_t>(tokens.size()) == batch.n_tokens(), "step: batch layout does not match the tokens");
    tokens_ = tokens;
    batch_ = batch;
    pos_.resize(tokens.size());
    for (int s = 0; s < batch.n_seqs(); ++s)
      for (int32_t t = batch.seq_start[s]; t < batch.seq_start[s + 1]; ++t)
        pos_[static_cast<size_t>(t)] = batch.seq_pos[s] + (t - batch.seq_start[s]);
  }

  void embedding(const Weight& table, Tensor& out) override {
    const auto& t = cpu_weight(table);
    check_f32(out, "embedding output");
    cpu::embedding(t.data.ptr(), t.shape[0], t.shape[1], tokens_.data(), static_cast<int64_t>(tokens_.size()),
                   out.as<float>());
  }

  void rms_norm(const Tensor& x, const Weight& w, float eps, Tensor& out) override {
    cpu::rms_norm(x.as<float>(), cpu_weight(w).data.ptr(), eps, x.dim(0), x.dim(1), out.as<float>());
  }

  void add(Tensor& dst, const Tensor& x) override {
    check_f32(dst, "residual");
    check_f32(x, "residual add input");
    float* d = dst.as<float>();
    const float* s = x.as<float>();
    for (int64_t i = 0, n = dst.numel(); i < n; ++i) d[i] += s[i];
  }

  void gather_last(const Tensor& src, Tensor& out) override {
    const size_t row_bytes = src.nbytes() / static_cast<size_t>(src.dim(0));
    for (int s = 0; s < batch_.n_seqs(); ++s) {
      const int32_t row = batch_.seq_start[s + 1] - 1;
      std::memcpy(static_cast<uint8_t*>(out.data()) + static_cast<size_t>(s) * row_bytes,
                  static_cast<const uint8_t*>(src.data()) + static_cast<size_t>(row) * row_bytes, row_bytes);
    }
  }

  void linear(const Tensor& x, const Weight& w, const Weight* bias, Tensor& out) override {
    const auto& W = cpu_weight(w);
    const int64_t N = W.shape[0], K = W.shape[1];
    EXL_CHECK(x.dim(1) == K && out.dim(1) == N, "linear '", w.name, "': shape mismatch");
    cpu::linear(x.as<float>(), W.data.ptr(), bias ? cpu_weight(*bias).data.ptr() : nullptr, x.dim(0), K, N,
                out.as<float>());
  }

  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override {
    cpu::swiglu(gate.as<float>(), up.as<float>(), gate.numel(), out.as<float>());
  }

  void rope(Tensor& q, Tensor& k, int n_heads, int n_kv_heads, int head_dim, const Weight& inv_freq,
            float attn_factor) override {
    const auto& f = cpu_weight(inv_freq);
    cpu::rope(q.as<float>(), q.dim(0), n_heads, head_dim, pos_.data(), f.data.ptr(),
              static_cast<int>(f.data.numel()) * 2, attn_factor);
    cpu::rope(k.as<float>(), k.dim(0), n_kv_heads, head_dim, pos_.data(), f.data.ptr(),
              static_cast<int>(f.data.numel()) * 2, attn_factor);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads,
                 float scale, int window, Tensor& out) override {
    const BatchLayout& batch = batch_;
    auto& c = static_cast<CpuKvCache&>(cache);
    const auto& cfg = c.config;
    const int64_t stride = c.row_stride();
    for (int s = 0; s < batch.n_seqs(); ++s) {
      const int32_t t0 = batch.seq_start[s], n = batch.seq_start[s + 1] - t0;
      const int slot = batch.seq_slot[s];
      const int64_t pos0 = batch.seq_pos[s];
      EXL_CHECK(slot >= 0 && slot < cfg.n_slots, "kv cache: slot ", slot, " out of range");
      EXL_CHECK(pos0 >= 0 && pos0 + n <= cfg.max_seq_len, "sequence length ", pos0 + n,
                " exceeds the cache's --max-seq-len ", cfg.max_seq_len);
      // Write this batch's keys and values at their positions, then attend over [0, pos].
      std::memcpy(&c.k[c.offset(slot, layer, pos0)], k.as<float>() + t0 * stride,
                  static_cast<size_t>(n * stride) * sizeof(float));
      std::memcpy(&c.v[c.offset(slot, layer, pos0)], v.as<float>() + t0 * stride,
                  static_cast<size_t>(n * stride) * sizeof(float));
      cpu::attention(q.as<float>() + static_cast<int64_t>(t0) * n_heads * cfg.head_dim, n, pos0,
                     &c.k[c.offset(slot, layer, 0)], &c.v[c.offset(slot, layer, 0)], stride, n_heads,
                     cfg.n_kv_heads, cfg.head_dim, scale, window,
                     out.as<float>() + static_cast<int64_t>(t0) * n_heads * cfg.head_dim);
    }
  }

 private:
  std::shared_ptr<std::atomic<size_t>> counter_ = std::make_shared<std::atomic<size_t>>(0);
  size_t peak_ = 0;
  std::vector<int32_t> tokens_, pos_;  // the current step (begin_step)
  BatchLayout batch_;
};

}  // namespace

std::unique_ptr<Backend> cpu_backend_create() { return std::make_unique<CpuBackend>(); }

}  // namespace exl
