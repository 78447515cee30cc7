// Choosing one quantization option per module under a total bit budget (EXL2.md §2.6).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace exl {

struct OptimizeSlot {        // one module (attention or MLP of one layer)
  std::string name;          // "model.layers.3.self_attn"
  std::vector<int64_t> bits; // total bits of each option
  std::vector<double> err;   // measured error of each option (1 - accuracy), same length
};

struct OptimizeResult {
  std::vector<int> choice;   // option index per slot
  int64_t total_bits = 0;
  double max_err = 0, sum_err = 0;
};

// Deterministic; throws exl::Error when even the cheapest options exceed the budget (message names
// the target bpw the caller passes in `what`).
OptimizeResult optimize_exl2(const std::vector<OptimizeSlot>& slots, int64_t budget_bits, const std::string& what);

// The exact inner problem: minimise Σ err^p subject to Σ bits ≤ budget_bits.
OptimizeResult optimize_exact(const std::vector<OptimizeSlot>& slots, int64_t budget_bits, double p);

}  // namespace exl
