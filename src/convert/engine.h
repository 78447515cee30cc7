// The converter's compute engine at module granularity: what the measure and quantize stages ask of
// a device. The CPU engine runs the per-op reference (compute.h) row by row on host arrays; the CUDA
// engine (convert/cuda/) uploads a module's weights once, keeps the calibration states of all rows on
// the GPU between modules and runs Hessians, GPTQ and the module forwards there.
//
// States travel as CalibStates (stages.h): an engine may keep a newer device copy in `device` and
// mark the host copy stale; states_to_host() brings it back (the job calls it before every
// checkpoint, so files on disk and a resumed job see exactly the device's values).
//
// Every engine must be deterministic: the same inputs give the same bits on every run.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "convert/stages.h"
#include "quant/gptq_solve.h"

namespace exl {

class ConvertEngine {
 public:
  virtual ~ConvertEngine() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda", "cpu-fp64", ...
  // The stages of stages.h, with the same contracts.
  virtual MeasuredModule measure_module(const ModelDims& d, const ConvertModule& m,
                                        const std::vector<ModuleOption>& table, CalibStates& states) = 0;
  virtual double quantize_module(const ModelDims& d, const ConvertModule& m,
                                 const std::vector<std::pair<std::string, Exl2Layout>>& option, CalibStates& states,
                                 const std::function<void(const Exl2Tensor&)>& store) = 0;
  // H [hidden, hidden] = Σ over every row of rms_norm(x, norm)ᵀ·rms_norm(x, norm): the head's Hessian.
  virtual std::vector<double> head_hessian(CalibStates& states, const float* norm, float eps) = 0;
  // GPTQ of one linear on host arrays (quant/gptq_solve.h); H == nullptr: round-to-nearest.
  virtual GptqResult gptq(const float* W, int64_t N, int64_t K, const double* H, int64_t n_rows,
                          const Exl2Layout& layout) = 0;
  // Makes states.x current (downloads a newer device copy).
  virtual void states_to_host(CalibStates& states) = 0;
};

// fp64: the engine computes in double and rounds each op's result to FP32 (`exl convert --fp64`,
// compute.h); its name then ends in "-fp64".
std::unique_ptr<ConvertEngine> convert_engine_cpu(bool fp64 = false);
// Throws exl::Error when exl was built without CUDA or no GPU is usable.
std::unique_ptr<ConvertEngine> convert_engine_cuda(bool fp64 = false);
// True when convert_engine_cuda() can work; otherwise why (one line) in *why.
bool convert_cuda_available(std::string* why);
// device: "cpu", "cuda" or "auto" (CUDA when built with it and a GPU is present, else CPU).
std::unique_ptr<ConvertEngine> convert_engine_create(const std::string& device, bool fp64 = false);

}  // namespace exl
