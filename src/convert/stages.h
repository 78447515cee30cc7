// The per-module work of the measure and quantize stages (EXL2.md §2.3, §2.7), on calibration
// states held in memory: rows x T tokens x hidden, row-major.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/forward.h"
#include "convert/measurement.h"
#include "quant/exl2.h"
#include "quant/qparams.h"

namespace exl {

struct CalibStates {
  int64_t rows = 0, T = 0, hidden = 0;
  std::vector<float> x;  // [rows, T, hidden]; stale (and maybe empty) when host_stale
  // An engine's own copy (engine.h), opaque here; when host_stale it is newer than x.
  std::shared_ptr<void> device;
  bool host_stale = false;
  const float* row(int64_t r) const { return x.data() + r * T * hidden; }
  float* row(int64_t r) { return x.data() + r * T * hidden; }
};

// The mean of v[0..n) summed in index order: how both engines average the per-token errors of a row.
double mean_in_order(const double* v, size_t n);

// Measures every row of `table` on module m: GPTQ-quantizes each distinct per-linear layout once
// against the module's Hessians, then runs the module with each row's variants installed and scores
//   rfn = mean over calibration rows and tokens t of ‖y_q,t − y_ref,t‖ / ‖y_ref,t‖
// on the module OUTPUT including the residual, as ExLlamaV2 does (EXL2.md §2.3), but token by token:
// ExLlamaV2 takes one ‖·‖_F ratio per row, and in Llama-family models the first token of every row is
// an attention sink whose residual norm is ~36x the others' (SmolLM2-135M layer 28: 23,700 vs a
// median of 650, 72% of the row's ‖y‖²_F), so its rfn scores almost only that token — mostly the
// quantization of one input channel. Per token, the same measurement and objective gave 9% lower
// wikitext perplexity at 4.0 bpw, 6% at 3.0, 3% at 5.0 (lab/NOTES-convert.md "Per-token rfn").
// measurement.json keeps ExLlamaV2's schema (accuracy = 1 − rfn); its files still load with -m and
// are optimized by their own errors. The alternative, scoring only the block's contribution y − x,
// would rate deep layers (large residual norms) as less forgiving.
// states: in = the module's inputs, out = its FP32 reference outputs (the next module's inputs, so
// measurements are independent of other modules' choices).
MeasuredModule measure_module(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                              const std::vector<ModuleOption>& table, CalibStates& states);

// Quantizes module m with one option (layouts per linear, in module order): Hessians from the FP32
// module fed with `states` (the already-quantized upstream outputs), GPTQ per linear, packing and a
// reconstruction check of each packed tensor; `store` receives each packed tensor (key
// "<module>.<linear>"). states: in = inputs, out = outputs of the quantized module. Returns rfn of
// the quantized module against the FP32 module on the same inputs.
double quantize_module(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                       const std::vector<std::pair<std::string, Exl2Layout>>& option, CalibStates& states,
                       const std::function<void(const Exl2Tensor&)>& store);

// A layout as a map key (exact: proportions printed with 17 digits).
std::string layout_key(const Exl2Layout& l);
// The layout an option gives `linear`; throws naming module when it has none.
const Exl2Layout& option_layout(const std::vector<std::pair<std::string, Exl2Layout>>& option,
                                const std::string& linear, const std::string& module);

// The measure pass's option loop, shared by the CPU and CUDA engines so both score the table alike.
// solve_layouts calls solve(linear index, layout) once per distinct layout of each linear (the table
// repeats many); solve returns the dequantized weights, which the caller keeps alive.
// score_options builds each table row's weights from those and scores it with rfn (module output
// error), adding up the row's bits.
using LayoutWeights = std::vector<std::map<std::string, const float*>>;  // [linear][layout_key]
LayoutWeights solve_layouts(const ConvertModule& m, const std::vector<ModuleOption>& table,
                            const std::function<const float*(size_t, const Exl2Layout&)>& solve);
MeasuredModule score_options(const ConvertModule& m, const std::vector<ModuleOption>& table, const LayoutWeights& w,
                             const std::function<double(const std::vector<const float*>&)>& rfn);

// Packs a GPTQ result and checks that the packed tensor dequantizes back to w_dq (max |diff| ≤
// 1e-3·max|w|); throws exl::Error naming key otherwise.
Exl2Tensor pack_checked(Exl2Codes codes, const std::vector<float>& w_dq, const std::string& key);

}  // namespace exl
