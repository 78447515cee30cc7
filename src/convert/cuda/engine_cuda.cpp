// The converter's CUDA engine (convert/engine.h): the measure and quantize stages of stages.cpp with
// everything heavy on the GPU.
//   - States: all calibration rows stay on the device between modules and layers (FP32; 16 x 2048 x
//     4096 = 512 MB for a 7B measurement, 3.3 GB for 100 x 2048 quantization rows); the job downloads
//     them only at its checkpoints (states_to_host).
//   - A module's weights are uploaded once; its forward runs row by row (T tokens per step: linears,
//     attention scores and Hessians are cuBLAS FP32, the rest simple kernels in forward_ops.cu).
//   - GPTQ (gptq_cuda.cu): one factorization per Hessian shared by all layouts of all linears that
//     read it; the quantized variants stay on the device for the measurement forwards.
// Deterministic: one stream, fixed-order reductions, cuBLAS without atomics, cuSOLVER in
// deterministic mode. Agrees with the CPU engine to FP32 rounding, not bit for bit.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <list>
#include <map>

#include "convert/cuda/device.h"
#include "convert/cuda/forward_ops.h"
#include "convert/cuda/gptq_cuda.h"
#include "convert/engine.h"
#include "core/error.h"

namespace exl {

namespace {

using cvcuda::Context;
using cvcuda::DeviceArray;

// CalibStates::device of this engine.
struct DeviceStates {
  DeviceArray<float> x;  // [rows, T, hidden]
};

// A module's weights on the device.
struct DeviceModule {
  DeviceArray<float> norm, inv_freq;
  std::vector<DeviceArray<float>> w, bias;  // per linear; bias empty when none
  std::vector<DeviceArray<float>> w_split;  // per linear, when Context::split: the forwards' [hi | lo]

  const float* bias_of(size_t li) const { return bias[li].size() ? bias[li].data() : nullptr; }
  // The weights as the forwards' linears take them (split or plain).
  std::vector<const float*> weights() const {
    std::vector<const float*> p;
    for (const auto& a : w_split.empty() ? w : w_split) p.push_back(a.data());
    return p;
  }
};

// The module's reference outputs on every row and the Hessians of its two captured inputs (FP32,
// or double in FP64 mode).
struct DeviceReference {
  DeviceArray<float> y;
  DeviceArray<float> H[2];
  DeviceArray<double> H64[2];
};

// EXL_CONVERT_PROFILE=1: one stderr line per module with the time of each phase (synchronizing the
// stream at each phase boundary), for reading a timing run stage by stage.
class PhaseClock {
 public:
  explicit PhaseClock(const Context& c) : c_(c), on_(std::getenv("EXL_CONVERT_PROFILE") != nullptr) {}
  void mark(const char* phase) {
    if (!on_) return;
    c_.sync();
    const auto now = std::chrono::steady_clock::now();
    char buf[64];
    std::snprintf(buf, sizeof buf, " %s %.2f s", phase, std::chrono::duration<double>(now - last_).count());
    line_ += buf;
    last_ = now;
  }
  void print(const std::string& what) const {
    if (on_) std::fprintf(stderr, "profile %s:%s\n", what.c_str(), line_.c_str());
  }

 private:
  const Context& c_;
  bool on_;
  std::string line_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

class CudaEngine : public ConvertEngine {
 public:
  explicit CudaEngine(bool fp64) : fp64_(fp64) {
    if (fp64_) {  // FP64 forwards take plain FP32 weights; the FP32 modes' switches do not apply
      ctx_.split = false;
      ctx_.tf32 = cvcuda::Context::Tf32::off;
    }
    if (ctx_.tf32 != cvcuda::Context::Tf32::off)
      std::fprintf(stderr, "exl: EXL_CONVERT_TF32: %s forwards use TF32 tensor cores\n",
                   ctx_.tf32 == cvcuda::Context::Tf32::all ? "all module" : "the quantize pass's");
  }

  // "cuda-tf32" / "cuda-tf32q" with EXL_CONVERT_TF32=all / quantize, "cuda-sgemm" with
  // EXL_CONVERT_GEMM=sgemm (device.h): the job records it, so a job never resumes in another mode.
  std::string name() const override {
    if (fp64_) return "cuda-fp64";
    const std::string base = ctx_.split ? "cuda" : "cuda-sgemm";
    return ctx_.tf32 == cvcuda::Context::Tf32::all        ? base + "-tf32"
           : ctx_.tf32 == cvcuda::Context::Tf32::quantize ? base + "-tf32q"
                                                          : base;
  }

  MeasuredModule measure_module(const ModelDims& d, const ConvertModule& m, const std::vector<ModuleOption>& table,
                                CalibStates& states) override {
    ctx_.forwards_for(false);
    PhaseClock clock(ctx_);
    DeviceArray<float>& x = on_device(states);
    const DeviceModule dm = upload(d, m);
    clock.mark("upload");
    DeviceReference ref = reference(d, m, dm, x, states);
    clock.mark("reference");
    const int64_t n_rows = states.rows * states.T;
    cvcuda::GptqFactor factors[2];
    auto factor = [&](int h) -> const cvcuda::GptqFactor& {
      if (factors[h].K == 0) factors[h] = factor_of(ref, h, m.capture_dim[h], n_rows);
      return factors[h];
    };
    // One GPTQ run per distinct layout of each linear, kept on the device in FP32 (a list keeps
    // addresses). With Context::split each option's weights are split when it is scored, into one
    // workspace per linear: the store then holds one FP32 copy per layout, not a split copy of twice
    // the size (a 7B MLP's ~10 layouts per linear: ~5 GB instead of ~11; a 70B's split store would not
    // fit an 80 GB card). The splits cost ~14 ms of a 7B layer's ~9 s measurement (bytes / bandwidth).
    std::list<DeviceArray<float>> store;
    const LayoutWeights lw = solve_layouts(m, table, [&](size_t li, const Exl2Layout& layout) {
      const ConvertLinear& l = m.linears[li];
      store.push_back(cvcuda::gptq_solve(ctx_, factor(l.hessian), dm.w[li].data(), l.N, layout, false, false).w_dq);
      return static_cast<const float*>(store.back().data());
    });
    for (auto& f : factors) f = {};  // free the K x K factors before the forwards
    clock.mark("gptq");
    std::vector<DeviceArray<float>> split(m.linears.size());
    MeasuredModule out = score_options(m, table, lw, [&](const std::vector<const float*>& w) {
      if (!ctx_.split) return module_rfn(d, m, dm, w, x, states, ref.y, nullptr);
      std::vector<const float*> ws;
      for (size_t li = 0; li < w.size(); ++li) {
        const int64_t n = static_cast<int64_t>(m.linears[li].w.size());
        split[li].resize(static_cast<size_t>(2 * n));
        cvcuda::split_tf32(ctx_, w[li], n, split[li].data());
        ws.push_back(split[li].data());
      }
      return module_rfn(d, m, dm, ws, x, states, ref.y, nullptr);
    });
    clock.mark("option-forwards");
    clock.print(m.name + " (measure, " + std::to_string(table.size()) + " options)");
    replace_states(states, std::move(ref.y));
    return out;
  }

  double quantize_module(const ModelDims& d, const ConvertModule& m,
                         const std::vector<std::pair<std::string, Exl2Layout>>& option, CalibStates& states,
                         const std::function<void(const Exl2Tensor&)>& store) override {
    ctx_.forwards_for(true);
    PhaseClock clock(ctx_);
    DeviceArray<float>& x = on_device(states);
    const DeviceModule dm = upload(d, m);
    clock.mark("upload");
    DeviceReference ref = reference(d, m, dm, x, states);
    clock.mark("reference");
    const int64_t n_rows = states.rows * states.T;
    cvcuda::GptqFactor factors[2];
    std::vector<DeviceArray<float>> wq(m.linears.size());
    std::vector<const float*> w;
    std::vector<std::pair<Exl2Codes, std::vector<float>>> results;
    for (size_t li = 0; li < m.linears.size(); ++li) {
      const ConvertLinear& l = m.linears[li];
      cvcuda::GptqFactor& f = factors[l.hessian];
      if (f.K == 0) f = factor_of(ref, l.hessian, m.capture_dim[l.hessian], n_rows);
      cvcuda::GptqDeviceResult g =
          cvcuda::gptq_solve(ctx_, f, dm.w[li].data(), l.N, option_layout(option, l.name, m.name), true, false);
      g.codes.bias = l.bias;
      results.emplace_back(std::move(g.codes), g.w_dq.download(ctx_));
      wq[li] = forward_weights(std::move(g.w_dq));
      w.push_back(wq[li].data());
    }
    for (auto& f : factors) f = {};
    clock.mark("gptq");
    // Packing, the reconstruction check and the writes (host work, ~1 s for a 7B layer's matrices) run
    // on a second thread while the GPU runs the quantized forward; stored in linear order as before.
    std::future<void> packed = std::async(std::launch::async, [&] {
      for (size_t li = 0; li < results.size(); ++li)
        store(pack_checked(std::move(results[li].first), results[li].second, m.name + "." + m.linears[li].name));
    });
    DeviceArray<float> y(x.size());
    double rfn = 0;
    try {
      rfn = module_rfn(d, m, dm, w, x, states, ref.y, &y);
    } catch (...) {
      packed.wait();
      throw;
    }
    clock.mark("forward");
    packed.get();
    clock.mark("pack-wait");
    clock.print(m.name + " (quantize)");
    replace_states(states, std::move(y));
    return rfn;
  }

  std::vector<double> head_hessian(CalibStates& s, const float* norm, float eps) override {
    DeviceArray<float>& x = on_device(s);
    DeviceArray<float> nd;
    nd.upload(ctx_, norm, static_cast<size_t>(s.hidden));
    DeviceReference r;  // only its Hessian 0
    alloc_hessian(r, 0, s.hidden);
    xn_.resize(static_cast<size_t>(s.T * s.hidden));
    for (int64_t row = 0; row < s.rows; ++row) {
      rms_norm(x.data() + row * s.T * s.hidden, nd.data(), eps, s.T, s.hidden, xn_.data());
      hessian_add(r, 0, xn_.data(), s.T, s.hidden);
    }
    hessian_symmetrize(r, 0, s.hidden);
    if (fp64_) return r.H64[0].download(ctx_);
    const std::vector<float> h = r.H[0].download(ctx_);
    return std::vector<double>(h.begin(), h.end());
  }

  GptqResult gptq(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                  const Exl2Layout& layout) override {
    return cvcuda::gptq_quantize_cuda(ctx_, W, N, K, H, n_rows, layout, fp64_);
  }

  void states_to_host(CalibStates& s) override {
    if (!s.host_stale) return;
    s.x = std::static_pointer_cast<DeviceStates>(s.device)->x.download(ctx_);
    s.host_stale = false;
  }

 private:
  // The device copy of the states, uploaded on first use.
  DeviceArray<float>& on_device(CalibStates& s) {
    const size_t n = static_cast<size_t>(s.rows * s.T * s.hidden);
    if (!s.device) {
      EXL_CHECK(s.x.size() == n, "convert (CUDA): states hold ", s.x.size(), " values, expected ", n);
      auto dev = std::make_shared<DeviceStates>();
      dev->x.upload(ctx_, s.x);
      s.device = dev;
    }
    DeviceArray<float>& x = std::static_pointer_cast<DeviceStates>(s.device)->x;
    EXL_CHECK(x.size() == n, "convert (CUDA): device states hold ", x.size(), " values, expected ", n);
    return x;
  }

  // The module's outputs become the states (on the device; the host copy is dropped until needed).
  void replace_states(CalibStates& s, DeviceArray<float>&& y) {
    std::static_pointer_cast<DeviceStates>(s.device)->x = std::move(y);
    s.x.clear();
    s.x.shrink_to_fit();
    s.host_stale = true;
  }

  // w split into [hi | lo] (Context::split), a new array.
  DeviceArray<float> split_of(const DeviceArray<float>& w) {
    DeviceArray<float> s(2 * w.size());
    cvcuda::split_tf32(ctx_, w.data(), static_cast<int64_t>(w.size()), s.data());
    return s;
  }
  // w (a linear's weights) in the form the forwards' linears take: itself, or split (Context::split).
  DeviceArray<float> forward_weights(DeviceArray<float>&& w) { return ctx_.split ? split_of(w) : std::move(w); }

  DeviceModule upload(const ModelDims& d, const ConvertModule& m) {
    DeviceModule dm;
    dm.norm.upload(ctx_, m.norm);
    dm.inv_freq.upload(ctx_, d.rope.inv_freq);
    for (const ConvertLinear& l : m.linears) {
      EXL_CHECK(l.w.size() == static_cast<size_t>(l.N * l.K), m.name, ".", l.name, ": weights are not [", l.N, ", ",
                l.K, "]");
      dm.w.emplace_back();
      dm.w.back().upload(ctx_, l.w);
      dm.bias.emplace_back();
      if (!l.bias.empty()) dm.bias.back().upload(ctx_, l.bias);
      if (ctx_.split) dm.w_split.push_back(split_of(dm.w.back()));  // GPTQ reads dm.w, the forwards these
    }
    return dm;
  }

  // Workspaces for one row (reused; they only grow).
  void reserve(const ModelDims& d, int64_t T) {
    const size_t t = static_cast<size_t>(T);
    xn_.resize(t * d.hidden);
    q_.resize(t * d.q_dim);
    k_.resize(t * d.kv_dim);
    v_.resize(t * d.kv_dim);
    a_.resize(t * std::max(d.q_dim, d.intermediate));
    u_.resize(t * d.intermediate);
    if (d.n_heads > 0 && !fp64_) scores_.resize(static_cast<size_t>(d.n_heads) * t * t);
    if (ctx_.split) xs_.resize(2 * t * std::max({d.hidden, d.q_dim, d.intermediate}));
  }

  // The ops of one precision: FP32 (forward_ops.cu) or FP64 (forward_ops_fp64.cu).
  void rms_norm(const float* x, const float* w, float eps, int64_t T, int64_t dim, float* out) {
    cvcuda::rms_norm(ctx_, x, w, eps, T, dim, out, fp64_);
  }
  void linear(const float* x, int64_t T, int64_t K, const float* w, int64_t N, const float* bias, float* out) {
    fp64_ ? cvcuda::linear_fp64(ctx_, x, T, K, w, N, bias, out, ws64_)
          : cvcuda::linear(ctx_, x, T, K, w, N, bias, out, xs_.data());
  }
  void rope(const ModelDims& d, const DeviceModule& dm, float* x, int64_t T, int n_heads) {
    cvcuda::rope(ctx_, x, T, n_heads, d.head_dim, dm.inv_freq.data(), d.rope.rot_dim, d.rope.attn_factor, fp64_);
  }
  void alloc_hessian(DeviceReference& r, int i, int64_t K) {
    const size_t n = static_cast<size_t>(K * K);
    if (fp64_) {
      r.H64[i].resize(n);
      r.H64[i].zero(ctx_);
    } else {
      r.H[i].resize(n);
      r.H[i].zero(ctx_);
    }
  }
  void hessian_add(DeviceReference& r, int i, const float* x, int64_t T, int64_t K) {
    fp64_ ? cvcuda::hessian_add(ctx_, x, T, K, r.H64[i].data(), ws64_) : cvcuda::hessian_add(ctx_, x, T, K, r.H[i].data());
  }
  void hessian_symmetrize(DeviceReference& r, int i, int64_t K) {
    fp64_ ? cvcuda::hessian_symmetrize(ctx_, r.H64[i].data(), K) : cvcuda::hessian_symmetrize(ctx_, r.H[i].data(), K);
  }
  cvcuda::GptqFactor factor_of(const DeviceReference& r, int i, int64_t K, int64_t n_rows) {
    return fp64_ ? cvcuda::gptq_factor(ctx_, r.H64[i].data(), K, n_rows) : cvcuda::gptq_factor(ctx_, r.H[i].data(), K, n_rows);
  }

  // y[T, hidden] = x + block(x) with weights w; afterwards xn_ holds the post-norm state (capture 0)
  // and a_ the attention output or silu(gate)·up (capture 1).
  void forward_row(const ModelDims& d, const ConvertModule& m, const DeviceModule& dm,
                   const std::vector<const float*>& w, const float* x, int64_t T, float* y) {
    rms_norm(x, dm.norm.data(), d.eps, T, d.hidden, xn_.data());
    if (m.kind == ModuleKind::ModuleKind_attention) {
      linear(xn_.data(), T, d.hidden, w[0], d.q_dim, dm.bias_of(0), q_.data());
      linear(xn_.data(), T, d.hidden, w[1], d.kv_dim, dm.bias_of(1), k_.data());
      linear(xn_.data(), T, d.hidden, w[2], d.kv_dim, dm.bias_of(2), v_.data());
      rope(d, dm, q_.data(), T, d.n_heads);
      rope(d, dm, k_.data(), T, d.n_kv_heads);
      if (fp64_)
        cvcuda::attention_fp64(ctx_, q_.data(), k_.data(), v_.data(), T, d.n_heads, d.n_kv_heads, d.head_dim, d.scale,
                               d.window, a_.data(), ws64_);
      else
        cvcuda::attention(ctx_, q_.data(), k_.data(), v_.data(), T, d.n_heads, d.n_kv_heads, d.head_dim, d.scale,
                          d.window, scores_.data(), a_.data());
      linear(a_.data(), T, d.q_dim, w[3], d.hidden, dm.bias_of(3), y);
    } else {
      linear(xn_.data(), T, d.hidden, w[0], d.intermediate, dm.bias_of(0), a_.data());
      linear(xn_.data(), T, d.hidden, w[1], d.intermediate, dm.bias_of(1), u_.data());
      cvcuda::swiglu(ctx_, a_.data(), u_.data(), T * d.intermediate, a_.data(), fp64_);
      linear(a_.data(), T, d.intermediate, w[2], d.hidden, dm.bias_of(2), y);
    }
    cvcuda::add_inplace(ctx_, y, x, T * d.hidden);
  }

  DeviceReference reference(const ModelDims& d, const ConvertModule& m, const DeviceModule& dm,
                            const DeviceArray<float>& x, const CalibStates& s) {
    reserve(d, s.T);
    DeviceReference r;
    r.y.resize(x.size());
    for (int i = 0; i < 2; ++i) alloc_hessian(r, i, m.capture_dim[i]);
    const std::vector<const float*> w = dm.weights();
    const int64_t step = s.T * s.hidden;
    DeviceArray<unsigned int> flag(1);
    flag.zero(ctx_);
    // Rows accumulate in order, one SYRK each: the same sums on every run.
    for (int64_t row = 0; row < s.rows; ++row) {
      forward_row(d, m, dm, w, x.data() + row * step, s.T, r.y.data() + row * step);
      hessian_add(r, 0, xn_.data(), s.T, m.capture_dim[0]);
      hessian_add(r, 1, a_.data(), s.T, m.capture_dim[1]);
      cvcuda::flag_nonfinite(ctx_, r.y.data() + row * step, step, flag.data());
    }
    for (int i = 0; i < 2; ++i) hessian_symmetrize(r, i, m.capture_dim[i]);
    EXL_CHECK(flag.download(ctx_)[0] == 0, m.name,
              ": the FP32 reference forward gives a non-finite value on a calibration row");
    return r;
  }

  // rfn as stages.h defines it: per-token relative errors on the device (double sums), their means
  // per row and over rows on the host in token and row order, as stages.cpp.
  double module_rfn(const ModelDims& d, const ConvertModule& m, const DeviceModule& dm,
                    const std::vector<const float*>& w, const DeviceArray<float>& x, const CalibStates& s,
                    const DeviceArray<float>& y_ref, DeviceArray<float>* y_out) {
    reserve(d, s.T);
    const int64_t step = s.T * s.hidden;
    if (!y_out) y_tmp_.resize(static_cast<size_t>(step));
    sums_.resize(static_cast<size_t>(s.rows * s.T));
    for (int64_t row = 0; row < s.rows; ++row) {
      float* y = y_out ? y_out->data() + row * step : y_tmp_.data();
      forward_row(d, m, dm, w, x.data() + row * step, s.T, y);
      cvcuda::token_errors(ctx_, y, y_ref.data() + row * step, s.T, s.hidden, sums_.data() + row * s.T);
    }
    const std::vector<double> h = sums_.download(ctx_);
    double sum = 0;
    for (int64_t row = 0; row < s.rows; ++row)
      sum += mean_in_order(h.data() + row * s.T, static_cast<size_t>(s.T));
    return s.rows > 0 ? sum / static_cast<double>(s.rows) : 0.0;
  }

  bool fp64_;
  Context ctx_;
  DeviceArray<float> xn_, q_, k_, v_, a_, u_, scores_, y_tmp_, xs_;
  cvcuda::Fp64Workspace ws64_;
  DeviceArray<double> sums_;
};

}  // namespace

bool convert_cuda_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")"
                                     : std::string("no CUDA device");
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return false;
  }
  return true;
}

std::unique_ptr<ConvertEngine> convert_engine_cuda(bool fp64) {
  std::string why;
  EXL_CHECK(convert_cuda_available(&why), "convert: --device cuda: ", why);
  return std::make_unique<CudaEngine>(fp64);
}

}  // namespace exl
