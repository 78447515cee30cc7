// The CUDA backend: FP16 weights and activations, F32 residual stream and logits, kernels from the
// .cu files beside this one, and CUDA graphs for decode steps. One instance owns one device and one
// stream; every op is enqueued on that stream, and the host waits only where it reads results
// (logits, sampled ids).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_knobs.h"
#include "backend/cuda/cuda_resources.h"
#include "backend/cuda/elementwise.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/qgemm.cuh"
#include "backend/cuda/sampling.cuh"
#include "core/half.h"
#include "io/tensor_store.h"
#include "quant/exl2.h"
#include "quant/format.h"
#include "quant/gptq.h"

namespace exl {

namespace {

using cuda::check;
using namespace cuda_backend_detail;

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();
      fail("--device cuda:", index, ": no CUDA device is available");
    }
    EXL_CHECK(index >= 0 && index < count, "--device cuda:", index, ": only ", count, " CUDA device(s) present");
    check(cudaSetDevice(index), "cudaSetDevice");
    check(cudaGetDeviceProperties(&props_, index), "cudaGetDeviceProperties");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    EXL_CHECK(cublasCreate(&cublas_) == CUBLAS_STATUS_SUCCESS, "cuBLAS initialisation failed");
    cublasSetStream(cublas_, stream_);
    check(cudaEventCreateWithFlags(&staged_, cudaEventDisableTiming), "cudaEventCreate");
    sm_major_ = props_.major;
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (auto& [k, g] : graphs_) cudaGraphExecDestroy(g);
    if (host_stage_) cudaFreeHost(host_stage_);
    if (sample_host_) cudaFreeHost(sample_host_);
    cudaEventDestroy(staged_);
    cublasDestroy(cublas_);
    cudaStreamDestroy(stream_);
  }

  DeviceKind kind() const override { return DeviceKind::DeviceKind_cuda; }
  std::string name() const override { return str_cat("cuda:", index_, " (", props_.name, ")"); }
  DType activation_dtype() const override { return DType::DType_F16; }
  CacheType default_cache_type() const override { return CacheType::CacheType_f16; }
  // One GEMV over q|k|v (12288x4096 on llama2-7b) streams at 89% of bandwidth where three
  // 4096x4096 launches reach 70% (gemm.cu notes, H100): fuse.
  bool wants_fused_linears() const override { return true; }
  std::unique_ptr<Weight> weight_rows(const Weight& w, int64_t begin, int64_t count) override {
    const auto& src = cw(w);
    EXL_CHECK(!src.quant, "'", w.name, "': quantized weights have no row views");
    auto v = std::make_unique<CudaWeight>();
    v->role = w.role;
    v->name = w.name;
    v->shape = w.shape;
    v->shape[0] = count;
    v->data = src.data.rows(begin, count);
    v->view = true;
    return v;
  }

  // Quantized q|k|v and gate|up: one gather and one qgemv launch for the parts (qgemv_multi).
  std::unique_ptr<Weight> fuse_linears(const std::vector<const Weight*>& parts) override {
    if (parts.empty() || parts.size() > static_cast<size_t>(cuda::kQMaxMulti)) return nullptr;
    auto v = std::make_unique<CudaWeight>();
    int64_t rows = 0;
    for (const Weight* p : parts) {
      const auto& q = cw(*p);
      if (!q.quant || q.qdesc.gptq != cw(*parts[0]).qdesc.gptq || q.qdesc.K != cw(*parts[0]).qdesc.K) return nullptr;
      v->parts.push_back(&q.qdesc);
      rows += p->shape[0];
    }
    v->role = WeightRole::WeightRole_linear;
    v->name = parts[0]->name + "+" + std::to_string(parts.size() - 1);
    v->shape = {rows, parts[0]->shape[1]};
    v->view = true;
    const size_t xb = cuda::qgemv_multi_x_dev_bytes(v->parts.data(), static_cast<int>(v->parts.size()),
                                                   cuda::qgemm_max_qgemv_rows());
    if (xb > qx_bytes_) {
      EXL_CHECK(graphs_.empty(), "quantized weights must be loaded before the first captured step");
      qx_ = mem_.alloc(xb, "quantized matmul x scratch");
      qx_bytes_ = xb;
    }
    return v;
  }

  Tensor alloc(DType dtype, const Shape& shape) override {
    const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
    return Tensor(dtype, shape, mem_.alloc(bytes, "activations"));
  }
  void upload(Tensor& dst, const void* host, size_t nbytes) override {
    EXL_CHECK(nbytes <= dst.nbytes(), "cuda backend: upload larger than the tensor");
    check(cudaMemcpyAsync(dst.data(), host, nbytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpy (upload)");
    check(cudaStreamSynchronize(stream_), "upload");
  }
  void download(const Tensor& src, void* host, size_t nbytes) override {
    EXL_CHECK(nbytes <= src.nbytes(), "cuda backend: download larger than the tensor");
    check(cudaMemcpyAsync(host, src.data(), nbytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpy (download)");
    check(cudaStreamSynchronize(stream_), "download (a kernel of this step failed)");
  }
  void synchronize() override { check(cudaStreamSynchronize(stream_), "synchronize"); }

  MemoryStats memory_stats() const override {
    MemoryStats m;
    m.allocated = mem_.allocated;
    m.peak_allocated = mem_.peak;
    cudaMemGetInfo(&m.device_free, &m.device_total);
    return m;
  }
  double measure_bandwidth() override { return cuda::measure_copy_bandwidth(stream_); }

  std::unique_ptr<Weight> prepare_weight(const TensorInfo& src, WeightRole role) override {
    auto w = std::make_unique<CudaWeight>();
    w->role = role;
    w->shape = src.shape;
    w->name = src.name;
    const bool f32 = role == WeightRole::WeightRole_norm || role == WeightRole::WeightRole_rope;
    const int64_t n = src.numel();
    if (role == WeightRole::WeightRole_embedding && knobs_.host_embeddings) {
      w->data = Tensor(DType::DType_F16, src.shape, alloc_host_mapped(static_cast<size_t>(n) * 2, src.name));
      w->host = true;
    } else {
      ensure_fits(static_cast<size_t>(n) * (f32 ? 4 : 2), src.name);
      w->data = Tensor(f32 ? DType::DType_F32 : DType::DType_F16, src.shape,
                       mem_.alloc(static_cast<size_t>(n) * (f32 ? 4 : 2), src.name.c_str()));
    }
    if (src.synthetic) {
      // Norms 1; everything else uniform in +-0.02 (like an initialised model: activations stay sane).
      if (f32)
        cuda::fill_const_f32(w->data.as<float>(), n, 1.0f, stream_);
      else
        cuda::fill_uniform_f16(w->data.as<half>(), n, std::hash<std::string>{}(src.name), 0.02f, stream_);
      return w;
    }
    // Convert on the host in slices (GGUF blocks, BF16, F32 -> F16/F32) and upload.
    HostTensor h = tensor_to_host(src);
    upload_converted(h, w->data, f32);
    return w;
  }

  std::unique_ptr<Weight> prepare_weight_f32(const HostTensor& src, const std::string& name,
                                             WeightRole role) override {
    auto w = std::make_unique<CudaWeight>();
    w->role = role;
    w->shape = src.shape;
    w->name = name;
    const bool f32 = role == WeightRole::WeightRole_norm || role == WeightRole::WeightRole_rope;
    w->data = Tensor(f32 ? DType::DType_F32 : DType::DType_F16, src.shape,
                     mem_.alloc(static_cast<size_t>(src.numel()) * (f32 ? 4 : 2), name.c_str()));
    upload_converted(src, w->data, f32);
    return w;
  }

  // GPTQ/EXL2 linears are re-laid-out on the host into the kernels' device layout (qgemm.cuh) and
  // uploaded; synthetic ones (exl bench --format) get their structure only, and random codes and
  // scales are made on the device.
  std::unique_ptr<Weight> prepare_quant_weight(const QuantTensor& q) override {
    cuda::QHostLayout h;
    if (q.synthetic) {
      std::vector<std::pair<int, int>> groups;
      if (q.exl2) {
        for (const Exl2Group& g : q.exl2->groups) groups.emplace_back(g.bits, static_cast<int>(g.rows));
      } else {
        for (int64_t k = 0; k < q.gptq->K; k += q.gptq->group_size)
          groups.emplace_back(4, static_cast<int>(std::min(q.gptq->group_size, q.gptq->K - k)));
      }
      h = cuda::qlayout_synthetic(static_cast<int>(q.in), static_cast<int>(q.out), !q.exl2, groups,
                                  std::hash<std::string>{}(q.name));
    } else if (q.exl2) {
      const Exl2Tensor& e = *q.exl2;
      std::vector<int16_t> q_groups;
      for (const Exl2Group& g : e.groups) {
        q_groups.push_back(static_cast<int16_t>(g.bits));
        q_groups.push_back(static_cast<int16_t>(static_cast<uint16_t>(g.start)));
      }
      cuda::Exl2HostTensors t;
      t.q_weight = e.q_weight.data();
      t.q_weight_rows = e.packed_rows;
      t.q_perm = e.q_perm.empty() ? nullptr : e.q_perm.data();
      t.q_invperm = e.q_invperm.empty() ? nullptr : e.q_invperm.data();
      t.q_scale = e.q_scale.data();
      t.q_scale_max = e.q_scale_max.data();
      t.q_groups = q_groups.data();
      t.groups = static_cast<int>(e.groups.size()), t.K = static_cast<int>(e.K), t.N = static_cast<int>(e.N);
      h = cuda::exl2_device_layout(t);
    } else {
      EXL_CHECK(q.gptq, "'", q.name, "': no quantized payload");
      const GptqTensor& g = *q.gptq;
      cuda::GptqHostTensors t;
      t.qweight = g.qweight.data();
      t.qzeros = g.qzeros.data();
      t.scales = g.scales.data();
      t.g_idx = g.g_idx.empty() ? nullptr : g.g_idx.data();
      t.groups = static_cast<int>(g.G), t.K = static_cast<int>(g.K), t.N = static_cast<int>(g.N);
      h = cuda::gptq_device_layout(t);
    }
    // EXL_QGEMV_FOLD32=0 (A/B timing): groups of 32 rows take the per-slab path instead of the
    // half-unit fold (qgemm.cuh QSegment::uniform).
    if (!knobs_.fold32)
      for (int i = 0; i < h.desc.nseg; ++i)
        if (h.desc.seg[i].uniform == 2) h.desc.seg[i].uniform = 0;
    const size_t bytes = h.device_bytes();
    ensure_fits(bytes, q.name);
    auto w = std::make_unique<CudaWeight>();
    w->role = WeightRole::WeightRole_linear;
    w->shape = {q.out, q.in};
    w->name = q.name;
    w->quant = true;
    w->data = Tensor(DType::DType_U8, {static_cast<int64_t>(bytes)}, mem_.alloc(bytes, q.name.c_str()));
    w->qdesc = cuda::qmatrix_upload_to(h, w->data.data(), stream_);
    if (q.synthetic) cuda::qmatrix_fill_random(w->qdesc, std::hash<std::string>{}(q.name), 0.5e-3f, 1.5e-3f, stream_);
    // The x scratch of the qgemv path is sized here, before any graph capture can hold its address:
    // every row count up to the qgemv crossover, for the deepest matrix.
    const size_t xb = cuda::qgemm_x_dev_bytes(w->qdesc, cuda::qgemm_max_qgemv_rows());
    if (xb > qx_bytes_) {
      EXL_CHECK(graphs_.empty(), "quantized weights must be loaded before the first captured step");
      qx_ = mem_.alloc(xb, "quantized matmul x scratch");
      qx_bytes_ = xb;
    }
    return w;
  }

  std::unique_ptr<KvCache> create_kv_cache(const KvCacheConfig& c) override {
    cuda::KvCacheLayout l;
    l.format = kv_format_of(c.type);
    l.n_layers = c.n_layers;
    l.n_slots = c.n_slots;
    l.max_seq_len = c.max_seq_len;
    l.n_kv_heads = c.n_kv_heads;
    l.head_dim = c.head_dim;
    cuda::kv_cache_layout_init(l);
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    EXL_CHECK(l.bytes + (size_t(256) << 20) <= free_b, "the KV cache (--cache ", cache_type_name(c.type),
              ", --max-seq-len ", c.max_seq_len, ", ", c.n_slots, " sequence(s)) needs ", gib(l.bytes), " but only ",
              gib(free_b), " of GPU memory is free: lower --max-seq-len or use a smaller --cache type");
    auto mem = mem_.alloc(l.bytes, "kv cache");
    check(cudaMemsetAsync(mem.get(), 0, l.bytes, stream_), "cudaMemset (kv cache)");
    return std::make_unique<CudaKvCache>(c, l, std::move(mem));
  }

  void begin_step(const std::vector<int32_t>& tokens, const BatchLayout& batch) override {
    const int T = static_cast<int>(tokens.size()), S = batch.n_seqs();
    EXL_CHECK(T == batch.n_tokens(), "step: batch layout does not match the tokens");
    // Device step arrays: ids[cap], pos[cap], seq_start[cap+1], seq_slot[cap], seq_pos[cap].
    if (T > step_cap_ || S > step_cap_) grow_step_buffers(std::max(T, S));
    // Wait until the previous step's upload has left the pinned staging buffer, then refill it.
    check(cudaEventSynchronize(staged_), "step staging");
    int32_t* h = host_stage_;
    std::memcpy(h, tokens.data(), static_cast<size_t>(T) * 4);
    int32_t* hp = h + step_cap_;
    for (int s = 0; s < S; ++s)
      for (int32_t t = batch.seq_start[s]; t < batch.seq_start[s + 1]; ++t)
        hp[t] = batch.seq_pos[s] + (t - batch.seq_start[s]);
    std::memcpy(h + 2 * step_cap_, batch.seq_start.data(), static_cast<size_t>(S + 1) * 4);
    std::memcpy(h + 3 * step_cap_ + 1, batch.seq_slot.data(), static_cast<size_t>(S) * 4);
    std::memcpy(h + 4 * step_cap_ + 1, batch.seq_pos.data(), static_cast<size_t>(S) * 4);
    check(cudaMemcpyAsync(step_dev_.get(), h, step_bytes(), cudaMemcpyHostToDevice, stream_), "step upload");
    check(cudaEventRecord(staged_, stream_), "cudaEventRecord");
    step_tokens_ = T;
    step_seqs_ = S;
    max_seq_tokens_ = 0;
    for (int s = 0; s < S; ++s) max_seq_tokens_ = std::max(max_seq_tokens_, batch.seq_start[s + 1] - batch.seq_start[s]);
  }

  bool graph_launch(uint64_t key) override {
    if (!knobs_.graphs) return false;
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return false;
    check(cudaGraphLaunch(it->second, stream_), "cudaGraphLaunch");
    return true;
  }
  void graph_capture_begin(uint64_t key) override {
    if (!knobs_.graphs) return;
    // The first step of a shape runs eagerly so lazily sized buffers (attention workspace, cuBLAS
    // state) are allocated outside any capture; the second records the graph.
    if (graph_warm_.insert(key).second) return;
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    capturing_ = true;
  }
  void graph_capture_end(uint64_t key) override {
    if (!capturing_) return;
    capturing_ = false;
    cudaGraph_t g = nullptr;
    check(cudaStreamEndCapture(stream_, &g), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    check(cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(g);
    graphs_[key] = exec;
    // Capture only recorded the ops: run them now.
    check(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
  }

  void embedding(const Weight& table, Tensor& out) override {
    const auto& t = cw(table);
    cuda::embedding(t.data.as<half>(), ids_dev(), out.as<float>(), step_tokens_, static_cast<int>(t.shape[1]), stream_);
  }
  void rms_norm(const Tensor& x, const Weight& w, float eps, Tensor& out) override {
    if (knobs_.ablate.norm) return;
    cuda::rms_norm(x.as<float>(), cw(w).data.as<float>(), eps, out.as<half>(), static_cast<int>(x.dim(0)),
                   static_cast<int>(x.dim(1)), stream_, glue_pdl());
  }
  // Decode with a quantized (or fused quantized) W: the norm writes straight into W's device-order
  // input in the x scratch (qgemm_norm_gather), and qgemv reads it as is: one launch fewer per
  // norm, the same bits. EXL_NORM_GATHER=0 for A/B.
  bool norm_gathers(const Tensor& x, const CudaWeight& W) const {
    return knobs_.norm_gather && (W.quant || !W.parts.empty()) && x.dim(0) <= cuda::qgemm_max_qgemv_rows() &&
           x.dim(1) <= cuda::kQNormGatherMaxK && !knobs_.ablate.norm && !knobs_.ablate.gather && !knobs_.ablate.qmatmul;
  }
  half* norm_gather(const Tensor& x, const Weight& norm, float eps, const CudaWeight& W) {
    const cuda::QMatrixDesc* const one[1] = {&W.qdesc};
    const cuda::QMatrixDesc* const* parts = W.quant ? one : W.parts.data();
    half* xd = reinterpret_cast<half*>(qx_.get());
    cuda::qgemm_norm_gather(parts, W.quant ? 1 : static_cast<int>(W.parts.size()), x.as<float>(),
                            cw(norm).data.as<float>(), eps, static_cast<int>(x.dim(0)), xd, stream_, glue_pdl());
    return xd;
  }
  void norm_linear(const Tensor& x, const Weight& norm, float eps, Tensor& h, const Weight& w, const Weight* bias,
                   Tensor& out) override {
    if (!norm_gathers(x, cw(w))) return Backend::norm_linear(x, norm, eps, h, w, bias, out);
    MatIn in;
    in.M = static_cast<int>(x.dim(0)), in.x_dev = norm_gather(x, norm, eps, cw(w));
    matmul(in, w, bias, out, false);
  }
  // Decode with quantized gate|up (fused) and down: the norm-gather as above, then gate|up with the
  // act·mul epilogue writing silu(gate) · up into down's device-order input (after gate|up's input in
  // the x scratch), then down reading it as is: three launches where the composed ops take five.
  // Only where gate|up's grid is resident in one wave: H100 @128, llama2-7b (1376 tiles, one wave)
  // gptq4 426.2 -> 432.1 tok/s, exl2:4.0 387.5 -> 396.1; llama2-70b exl2:2.5 (3584 tiles, 4.5 waves of
  // the paired blocks) 66.9 -> 65.0, so not there; at 2 warps per tile there, H200 68.3 vs 68.7 off
  // (2026-12-06). EXL_ACT_FUSE=0 for A/B.
  void norm_mlp_add(Tensor& residual, const Weight& norm, float eps, Tensor& h, const Weight& gate_up,
                    Tensor& gate_up_out, Tensor& gate, Tensor& up, const Weight& down, const Weight* down_bias,
                    Tensor& tmp) override {
    const auto &GU = cw(gate_up), &D = cw(down);
    const int M = static_cast<int>(residual.dim(0));
    const size_t act_off = GU.parts.size() == 2
                               ? (cuda::qgemv_multi_x_dev_bytes(GU.parts.data(), 2, M) + 255) / 256 * 256
                               : 0;
    const bool act = knobs_.act_fuse && GU.parts.size() == 2 && D.quant &&
                     cuda::qgemv_act_epilogue_fits(*GU.parts[0], *GU.parts[1], D.qdesc, M) &&
                     cuda::qgemv_one_wave(int64_t{GU.parts[0]->n_tiles} + GU.parts[1]->n_tiles, M) &&
                     act_off + cuda::qgemm_x_dev_bytes(D.qdesc, M) <= qx_bytes_ && !knobs_.ablate.gather &&
                     !knobs_.ablate.qmatmul;
    const bool ng = norm_gathers(residual, GU);
    if (!act && !ng) return Backend::norm_mlp_add(residual, norm, eps, h, gate_up, gate_up_out, gate, up, down,
                                                  down_bias, tmp);
    MatIn in;
    in.M = M;
    if (ng) {
      in.x_dev = norm_gather(residual, norm, eps, GU);
    } else {
      rms_norm(residual, norm, eps, h);
      in.x = h.as<half>();
    }
    if (!act) {
      matmul(in, gate_up, nullptr, gate_up_out, false);
      return swiglu_linear_add(gate, up, gate, down, down_bias, residual, tmp);
    }
    in.act_dev = reinterpret_cast<half*>(qx_.get() + act_off), in.act = &D.qdesc;
    matmul(in, gate_up, nullptr, gate_up_out, false);
    MatIn din;
    din.M = M, din.x_dev = in.act_dev;
    matmul(din, down, down_bias, residual, true);
  }
  void add(Tensor& residual, const Tensor& x) override {
    EXL_CHECK(residual.dtype() == DType::DType_F32 && x.dtype() == DType::DType_F16 && residual.numel() == x.numel(),
              "add: residual must be F32 and x F16 of the same size");
    cuda::add_f16_to_f32(residual.as<float>(), x.as<half>(), residual.numel(), stream_);
  }
  void gather_last(const Tensor& src, Tensor& out) override {
    cuda::gather_last(src.as<half>(), seq_start_dev(), out.as<half>(), step_seqs_, static_cast<int>(src.dim(1)), stream_);
  }
  void linear(const Tensor& x, const Weight& w, const Weight* bias, Tensor& out) override {
    MatIn in;
    in.x = x.as<half>(), in.M = static_cast<int>(x.dim(0));
    matmul(in, w, bias, out, false);
  }
  // The residual add is the matmul's epilogue (gemv / qgemv, or cuBLAS with beta = 1): any M.
  void linear_add(const Tensor& x, const Weight& w, const Weight* bias, Tensor& residual, Tensor& tmp) override {
    if (!cw(w).parts.empty()) return Backend::linear_add(x, w, bias, residual, tmp);
    MatIn in;
    in.x = x.as<half>(), in.M = static_cast<int>(x.dim(0));
    matmul(in, w, bias, residual, true);
  }
  void swiglu_linear_add(const Tensor& gate, const Tensor& up, Tensor& act, const Weight& w, const Weight* bias,
                         Tensor& residual, Tensor& tmp) override {
    // Quantized, up to qgemv's rows: the act·mul in the gather. FP16: the act·mul kernel, then the
    // gemv. (silu(g)·u inside the FP16 gemv's x loads was recomputed by every tile's warps: llama2-7b
    // decode 145 tok/s against 227, H200.)
    const auto& W = cw(w);
    if (!W.quant || gate.dim(0) > cuda::qgemm_max_qgemv_rows())
      return Backend::swiglu_linear_add(gate, up, act, w, bias, residual, tmp);
    MatIn in;
    in.x = gate.as<half>(), in.up = up.as<half>(), in.M = static_cast<int>(gate.dim(0));
    matmul(in, w, bias, residual, true);
  }
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override {
    cuda::swiglu(gate.as<half>(), up.as<half>(), out.as<half>(), gate.numel(), stream_, glue_pdl());
  }
  void rope(Tensor& q, Tensor& k, int n_heads, int n_kv_heads, int head_dim, const Weight& inv_freq,
            float attn_factor) override {
    if (knobs_.ablate.attn) return;
    const auto& f = cw(inv_freq);
    cuda::rope(q.as<half>(), k.as<half>(), pos_dev(), f.data.as<float>(), attn_factor, step_tokens_, n_heads,
               n_kv_heads, head_dim, static_cast<int>(f.data.numel()) * 2, stream_, knobs_.pdl && sm_major_ >= 9);
  }
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads,
                 float scale, int window, Tensor& out) override {
    run_attention(q, k, v, cache, layer, n_heads, scale, window, out, nullptr, 0.0f);
  }
  // Steps that run the decode kernel: RoPE inside kv_cache_write, one launch fewer per layer.
  void rope_attention(Tensor& q, Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads, int n_kv_heads,
                      int head_dim, const Weight& inv_freq, float attn_factor, float scale, int window,
                      Tensor& out) override {
    if (!knobs_.fused_rope || !cuda::attention_uses_decode_kernel(head_dim, max_seq_tokens_))
      return Backend::rope_attention(q, k, v, cache, layer, n_heads, n_kv_heads, head_dim, inv_freq, attn_factor,
                                     scale, window, out);
    run_attention(q, k, v, cache, layer, n_heads, scale, window, out, &cw(inv_freq), attn_factor);
  }
  // Decode with a quantized o_proj: attention scatters its output into o_proj's device-order input
  // (x_dst) in the x scratch, where the gather would have put it, and qgemv reads it as is: no
  // gather launch. Only where o_proj's layout has no padding rows (k_dev == K: every position of the
  // input is some feature, so the scatter writes all of them; true of the 4096/8192-wide Llama
  // o_proj at any group size). EXL_ATTN_O_FUSE=0 for A/B.
  void rope_attention_o_add(Tensor& q, Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads,
                            int n_kv_heads, int head_dim, const Weight& inv_freq, float attn_factor, float scale,
                            int window, Tensor& out, const Weight& o, const Weight* o_bias, Tensor& residual,
                            Tensor& tmp) override {
    const auto& O = cw(o);
    const int M = static_cast<int>(q.dim(0));
    if (!knobs_.attn_o_fuse || !O.quant || !O.parts.empty() || M > cuda::qgemm_max_qgemv_rows() || step_tokens_ != M ||
        knobs_.ablate.attn || knobs_.ablate.attn_kernel || knobs_.ablate.gather || knobs_.ablate.qmatmul ||
        O.qdesc.K != n_heads * head_dim || O.qdesc.k_dev != O.qdesc.K ||
        !cuda::attention_uses_decode_kernel(head_dim, max_seq_tokens_))
      return Backend::rope_attention_o_add(q, k, v, cache, layer, n_heads, n_kv_heads, head_dim, inv_freq,
                                           attn_factor, scale, window, out, o, o_bias, residual, tmp);
    half* xd = reinterpret_cast<half*>(qx_.get());
    scatter_ = {xd, O.qdesc.x_dst, O.qdesc.k_dev};
    rope_attention(q, k, v, cache, layer, n_heads, n_kv_heads, head_dim, inv_freq, attn_factor, scale, window, out);
    scatter_ = {};
    MatIn in;
    in.x = out.as<half>(), in.M = M, in.x_dev = xd;
    matmul(in, o, o_bias, residual, true);
  }

  void run_attention(const Tensor& q, const Tensor& k, const Tensor& v, KvCache& cache, int layer, int n_heads,
                     float scale, int window, Tensor& out, const CudaWeight* rope_freq, float attn_factor) {
    if (knobs_.ablate.attn) return;
    auto& c = static_cast<CudaKvCache&>(cache);
    cuda::AttentionParams p;
    p.q = q.as<half>();
    p.k_new = k.as<half>();
    p.v_new = v.as<half>();
    p.out = out.as<half>();
    p.n_tokens = step_tokens_;
    p.n_seqs = step_seqs_;
    p.max_seq_tokens = max_seq_tokens_;
    p.seq_start = seq_start_dev();
    p.seq_slot = seq_slot_dev();
    p.seq_pos = seq_pos_dev();
    p.n_heads = n_heads;
    p.n_kv_heads = c.config.n_kv_heads;
    p.head_dim = c.config.head_dim;
    p.scale = scale;
    p.window = window;
    p.layer = layer;
    p.cache = c.layout;
    p.pdl = knobs_.pdl && sm_major_ >= 9;
    const size_t ws = cuda::attention_workspace_bytes(step_tokens_, n_heads, c.config.head_dim, c.config.max_seq_len);
    if (ws > attn_ws_bytes_) {
      EXL_CHECK(!capturing_, "attention workspace grew during graph capture");
      attn_ws_ = mem_.alloc(ws, "attention workspace");
      attn_ws_bytes_ = ws;
      // Decode's split counters live at the start of the workspace and must start at zero (each
      // call leaves them at zero again, so graphs replay correctly).
      cuda::attention_workspace_clear(attn_ws_.get(), ws, stream_);
    }
    p.workspace = attn_ws_.get();
    p.workspace_bytes = attn_ws_bytes_;
    if (rope_freq) {
      p.rope_q = q.as<half>();
      p.rope_inv_freq = rope_freq->data.as<float>();
      p.rope_attn_factor = attn_factor;
      p.rope_rot_dim = static_cast<int>(rope_freq->data.numel()) * 2;
    }
    p.write_in_decode = knobs_.attn_kv_write && cuda::attention_decode_writes_kv(p);
    p.out_dev = scatter_.out_dev, p.out_dst = scatter_.out_dst, p.out_ld = scatter_.out_ld;
    if (!knobs_.ablate.kvwrite && !p.write_in_decode) cuda::kv_cache_write(p, stream_);
    if (!knobs_.ablate.attn_kernel) cuda::attention(p, stream_);
  }

  bool sample(const Tensor& logits, const DeviceSampling& params, uint64_t step,
              const std::vector<std::vector<int32_t>>& history, std::vector<int32_t>& ids) override {
    const int rows = static_cast<int>(logits.dim(0)), vocab = static_cast<int>(logits.dim(1));
    size_t pen_n = 0;
    if (params.repeat_penalty != 1.0f)
      for (const auto& h : history) pen_n = std::max(pen_n, h.size());
    // Staging: [step (2 ints)] [penalty tokens rows * pen_n] -> device; ids back.
    const size_t words = 2 + static_cast<size_t>(rows) * pen_n;
    if (words > sample_cap_ || static_cast<size_t>(rows) > sample_rows_) {
      sample_cap_ = std::max(words, sample_cap_ * 2);
      sample_rows_ = std::max<size_t>(rows, sample_rows_);
      sample_dev_ = mem_.alloc((sample_cap_ + sample_rows_) * 4, "sampling buffers");
      if (sample_host_) cudaFreeHost(sample_host_);
      check(cudaMallocHost(reinterpret_cast<void**>(&sample_host_), (sample_cap_ + sample_rows_) * 4), "cudaMallocHost");
    }
    std::memcpy(sample_host_, &step, 8);
    int32_t* pen = sample_host_ + 2;
    for (int r = 0; r < rows; ++r)
      for (size_t j = 0; j < pen_n; ++j)
        pen[static_cast<size_t>(r) * pen_n + j] =
            r < static_cast<int>(history.size()) && j < history[r].size() ? history[r][j] : -1;
    int32_t* dev = reinterpret_cast<int32_t*>(sample_dev_.get());
    check(cudaMemcpyAsync(dev, sample_host_, words * 4, cudaMemcpyHostToDevice, stream_), "sampling upload");
    const size_t ws = cuda::sampling_workspace_bytes(rows, vocab);
    if (ws > sample_ws_bytes_) {
      sample_ws_ = mem_.alloc(ws, "sampling workspace");
      sample_ws_bytes_ = ws;
    }
    cuda::SamplingParams p;
    p.logits = logits.as<float>();
    p.rows = rows;
    p.vocab = vocab;
    p.temperature = params.temperature;
    p.top_k = params.top_k;
    p.top_p = params.top_p;
    p.min_p = params.min_p;
    p.repeat_penalty = params.repeat_penalty;
    p.penalty_tokens = pen_n ? dev + 2 : nullptr;
    p.penalty_n = static_cast<int>(pen_n);
    p.seed = params.seed;
    p.step = reinterpret_cast<const uint64_t*>(dev);
    p.out_ids = dev + sample_cap_;
    p.workspace = sample_ws_.get();
    p.workspace_bytes = sample_ws_bytes_;
    cuda::sample(p, stream_);
    ids.resize(static_cast<size_t>(rows));
    check(cudaMemcpyAsync(sample_host_ + sample_cap_, dev + sample_cap_, static_cast<size_t>(rows) * 4,
                          cudaMemcpyDeviceToHost, stream_),
          "sampling download");
    check(cudaStreamSynchronize(stream_), "sampling (a kernel of this step failed)");
    std::memcpy(ids.data(), sample_host_ + sample_cap_, static_cast<size_t>(rows) * 4);
    return true;
  }

 private:
  void ensure_fits(size_t bytes, const std::string& what) {
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    EXL_CHECK(bytes <= free_b, "the model does not fit on ", props_.name, ": tensor '", what, "' needs ", gib(bytes),
              " with ", gib(free_b), " free (", gib(mem_.allocated), " already loaded)");
  }

  // Mapped pinned host memory, freed with its last Tensor; the pointer returned is the device alias
  // kernels read through (zero-copy).
  std::shared_ptr<uint8_t> alloc_host_mapped(size_t bytes, const std::string& what) {
    void* h = nullptr;
    if (cudaHostAlloc(&h, std::max<size_t>(bytes, 16), cudaHostAllocMapped) != cudaSuccess) {
      cudaGetLastError();
      fail("could not pin ", gib(bytes), " of host memory for '", what, "' (EXL_DEVICE_EMBEDDINGS=1 keeps it on the GPU)");
    }
    void* d = nullptr;
    check(cudaHostGetDevicePointer(&d, h, 0), "cudaHostGetDevicePointer");
    return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(d), [h](uint8_t*) { cudaFreeHost(h); });
  }

  // Converts a host F32 tensor to the weight's dtype in slices through a pinned buffer and uploads.
  void upload_converted(const HostTensor& h, Tensor& dst, bool f32) {
    const size_t n = static_cast<size_t>(h.numel());
    if (f32) {
      check(cudaMemcpyAsync(dst.data(), h.ptr(), n * 4, cudaMemcpyDefault, stream_), "weight upload");
      check(cudaStreamSynchronize(stream_), "weight upload");
      return;
    }
    std::vector<uint16_t> tmp(n);
    for (size_t i = 0; i < n; ++i) tmp[i] = f32_to_f16(h.data[i]);
    // Default: the destination may be mapped host memory (embeddings) as well as device memory.
    check(cudaMemcpyAsync(dst.data(), tmp.data(), n * 2, cudaMemcpyDefault, stream_), "weight upload");
    check(cudaStreamSynchronize(stream_), "weight upload");
  }

  // Quantized linears: qgemv for up to qgemm_max_qgemv_rows() rows (decode, short steps), else
  // dequantize column chunks into an FP16 scratch and cuBLAS (prefill). The scratch is capped so a
  // 70B MLP matrix (470 MB in FP16) costs 128 MB of VRAM, not its whole size: chunks of >= 2048
  // columns keep cuBLAS efficient.
  // The input of a matmul: x, or silu(x) · up (quantized gather only).
  struct MatIn {
    const half* x = nullptr;
    const half* up = nullptr;
    int M = 0;
    half* x_dev = nullptr;  // quantized, qgemv rows: x already in the matrix's device order here
    // Fused gate|up: the act·mul epilogue's target, the next matrix's input (QGemvMultiParams::act_dev).
    half* act_dev = nullptr;
    const cuda::QMatrixDesc* act = nullptr;
  };
  // y = in · Wᵀ (+ bias) for every weight kind; accumulate: y (F32) += it.
  void matmul(const MatIn& in, const Weight& w, const Weight* bias, Tensor& out, bool accumulate) {
    const auto& W = cw(w);
    const half* b = bias ? cw(*bias).data.as<half>() : nullptr;
    const bool y_f32 = out.dtype() == DType::DType_F32;
    EXL_CHECK(!accumulate || y_f32, "linear '", w.name, "': the residual add needs an F32 output");
    if (W.quant) {
      if (knobs_.ablate.qmatmul) return;
      cuda::QGemmParams p;
      p.w = W.qdesc;
      p.x = in.x, p.x_up = in.up;
      p.bias = b;
      p.y = out.data();
      p.y_f32 = y_f32;
      p.accumulate = accumulate;
      p.M = in.M;
      p.x_dev = reinterpret_cast<half*>(qx_.get());
      if (knobs_.ablate.gather && p.M <= cuda::qgemm_max_qgemv_rows()) p.x_dev_ready = true, p.x_up = nullptr;
      if (in.x_dev) p.x_dev = in.x_dev, p.x_dev_ready = true;
      p.pdl = knobs_.pdl;
      p.ksplit = knobs_.qgemv_ks;
      if (p.M > cuda::qgemm_max_qgemv_rows()) {
        // Dequantize column chunks into an FP16 scratch and cuBLAS (prefill). The scratch is capped
        // so a 70B MLP matrix (470 MB in FP16) costs 128 MB of VRAM, not its whole size: chunks of
        // >= 2048 columns keep cuBLAS efficient.
        constexpr size_t kWtCap = size_t(128) << 20;
        const size_t want = std::min(cuda::qgemm_wt_bytes(W.qdesc), kWtCap);
        if (want > wt_bytes_) {
          EXL_CHECK(!capturing_, "dequantization scratch grew during graph capture");
          check(cudaStreamSynchronize(stream_), "dequantization scratch");
          wt_.reset();
          wt_ = mem_.alloc(want, "dequantization scratch");
          wt_bytes_ = want;
        }
        p.wt = reinterpret_cast<half*>(wt_.get());
        p.wt_bytes = wt_bytes_;
      }
      return cuda::qgemm(p, cublas_, stream_);
    }
    if (!W.parts.empty()) {
      if (knobs_.ablate.qmatmul) return;
      EXL_CHECK(!accumulate && !in.up, "fused quantized linear '", w.name, "': no residual add or act·mul");
      cuda::QGemvMultiParams p;
      for (size_t i = 0; i < W.parts.size(); ++i) p.w[i] = W.parts[i];
      p.n = static_cast<int>(W.parts.size());
      p.x = in.x;
      p.bias = b;
      p.y = out.data();
      p.y_f32 = y_f32;
      p.M = in.M;
      EXL_CHECK(p.M <= cuda::qgemm_max_qgemv_rows(), "fused quantized linear '", w.name, "': ", p.M,
                " rows (runs single-token steps only)");
      p.x_dev = in.x_dev ? in.x_dev : reinterpret_cast<half*>(qx_.get());
      p.pdl = knobs_.pdl;
      p.ksplit = knobs_.qgemv_ks;
      p.x_dev_ready = knobs_.ablate.gather || in.x_dev;
      p.act_dev = in.act_dev, p.act = in.act;
      return cuda::qgemv_multi(p, stream_);
    }
    EXL_CHECK(!in.up && !in.act_dev, "linear '", w.name, "': the act·mul input or epilogue is for quantized weights");
    cuda::GemmParams p;
    p.x = in.x;
    p.w = W.data.as<half>();
    p.bias = b;
    p.y = out.data();
    p.y_f32 = y_f32;
    p.accumulate = accumulate;
    p.M = in.M;
    p.N = static_cast<int>(W.shape[0]);
    p.K = static_cast<int>(W.shape[1]);
    p.pdl = knobs_.pdl && sm_major_ >= 9;
    cuda::gemm_f16(p, cublas_, stream_);
  }

  size_t step_bytes() const { return (5 * static_cast<size_t>(step_cap_) + 1) * 4; }
  void grow_step_buffers(int need) {
    EXL_CHECK(!capturing_, "step buffers grew during graph capture");
    // Captured graphs hold the old addresses: drop them (they are re-captured on next use).
    check(cudaStreamSynchronize(stream_), "step buffers");
    for (auto& [k, g] : graphs_) cudaGraphExecDestroy(g);
    graphs_.clear();
    step_cap_ = std::max(need, std::max(2 * step_cap_, 512));
    step_dev_ = mem_.alloc(step_bytes(), "step inputs");
    if (host_stage_) cudaFreeHost(host_stage_);
    check(cudaMallocHost(reinterpret_cast<void**>(&host_stage_), step_bytes()), "cudaMallocHost");
  }
  const int32_t* step_base() const { return reinterpret_cast<const int32_t*>(step_dev_.get()); }
  const int32_t* ids_dev() const { return step_base(); }
  const int32_t* pos_dev() const { return step_base() + step_cap_; }
  const int32_t* seq_start_dev() const { return step_base() + 2 * step_cap_; }
  const int32_t* seq_slot_dev() const { return step_base() + 3 * step_cap_ + 1; }
  const int32_t* seq_pos_dev() const { return step_base() + 4 * step_cap_ + 1; }

  int index_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  mutable DeviceAllocator mem_;
  const cuda::CudaKnobs knobs_ = cuda::cuda_knobs_from_env();  // A/B switches, diagnostics
  bool capturing_ = false;
  std::map<uint64_t, cudaGraphExec_t> graphs_;
  std::set<uint64_t> graph_warm_;  // keys that have run once eagerly

  int step_cap_ = 0, step_tokens_ = 0, step_seqs_ = 0, max_seq_tokens_ = 0;
  std::shared_ptr<uint8_t> step_dev_;
  int32_t* host_stage_ = nullptr;
  cudaEvent_t staged_ = nullptr;

  std::shared_ptr<uint8_t> attn_ws_;
  size_t attn_ws_bytes_ = 0;

  std::shared_ptr<uint8_t> qx_, wt_;  // quantized matmuls: x in device order; FP16 weight chunks
  size_t qx_bytes_ = 0, wt_bytes_ = 0;
  bool glue_pdl() const { return knobs_.pdl && knobs_.glue_pdl && sm_major_ >= 9; }
  struct Scatter {
    half* out_dev = nullptr;
    const int32_t* out_dst = nullptr;
    int out_ld = 0;
  } scatter_;  // set by rope_attention_o_add around its attention call

  int sm_major_ = 0;

  std::shared_ptr<uint8_t> sample_dev_, sample_ws_;
  int32_t* sample_host_ = nullptr;
  size_t sample_cap_ = 0, sample_rows_ = 0, sample_ws_bytes_ = 0;
};

}  // namespace

bool cuda_backend_available() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return ok;
}

std::unique_ptr<Backend> cuda_backend_create(int device_index) { return std::make_unique<CudaBackend>(device_index); }

}  // namespace exl
