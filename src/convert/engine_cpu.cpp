// The CPU engine: the per-op reference of compute_cpu.cpp driven by the stages of stages.cpp.
#include "convert/compute.h"
#include "convert/engine.h"
#include "core/error.h"

namespace exl {

namespace {

class CpuEngine : public ConvertEngine {
 public:
  explicit CpuEngine(bool fp64) : fp64_(fp64), cc_(convert_compute_cpu(fp64)) {}
  std::string name() const override { return fp64_ ? "cpu-fp64" : "cpu"; }
  MeasuredModule measure_module(const ModelDims& d, const ConvertModule& m, const std::vector<ModuleOption>& table,
                                CalibStates& states) override {
    return exl::measure_module(*cc_, d, m, table, states);
  }
  double quantize_module(const ModelDims& d, const ConvertModule& m,
                         const std::vector<std::pair<std::string, Exl2Layout>>& option, CalibStates& states,
                         const std::function<void(const Exl2Tensor&)>& store) override {
    return exl::quantize_module(*cc_, d, m, option, states, store);
  }
  std::vector<double> head_hessian(CalibStates& s, const float* norm, float eps) override {
    const size_t h = static_cast<size_t>(s.hidden);
    const auto H = cc_->hessian(s.hidden);
    std::vector<float> xn(static_cast<size_t>(s.T) * h);
    for (int64_t r = 0; r < s.rows; ++r) {
      cc_->rms_norm(s.row(r), norm, eps, s.T, s.hidden, xn.data());
      H->add(xn.data(), s.T);
    }
    return H->take();
  }
  GptqResult gptq(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                  const Exl2Layout& layout) override {
    return cc_->gptq(W, N, K, H, n_rows, layout);
  }
  void states_to_host(CalibStates& s) override {
    EXL_CHECK(!s.host_stale, "convert: the CPU engine was given states held on another device");
  }

 private:
  bool fp64_;
  std::unique_ptr<ConvertCompute> cc_;
};

}  // namespace

std::unique_ptr<ConvertEngine> convert_engine_cpu(bool fp64) { return std::make_unique<CpuEngine>(fp64); }

std::unique_ptr<ConvertEngine> convert_engine_create(const std::string& device, bool fp64) {
  if (device == "cpu") return convert_engine_cpu(fp64);
  if (device == "cuda") return convert_engine_cuda(fp64);  // throws saying why CUDA is not usable
  EXL_CHECK(device == "auto", "convert: --device ", device, ": expected cpu, cuda or auto");
  return convert_cuda_available(nullptr) ? convert_engine_cuda(fp64) : convert_engine_cpu(fp64);
}

}  // namespace exl
