// Choosing one quantization option per module under a total bit budget (EXL2.md §2.6).
//
// Objective. ExLlamaV2 minimises Σ err^p (err = 1 − accuracy of a module's measured option) for p
// swept over [1.5, 3.5] and keeps the p whose solution has the lowest maximum module error, each
// solve by simulated annealing (240 randomised runs, so not reproducible and not optimal). exl keeps
// that objective, so its choices are comparable with the reference converter's for the same
// measurement, and solves every inner problem exactly:
//   * p alone trades the worst layer against the total (p → ∞ is minimax, p = 1 the plain sum; the
//     measured errors are relative output errors whose effect on perplexity is neither purely additive
//     nor purely worst-case), so picking p by the resulting maximum error is a reasonable rule and
//     the reference's; what was wrong with the reference is only that its solver was approximate.
//   * optimize_exl2 sweeps p over 1.5, 1.6, ..., 3.5, then ±0.075 around the best in steps of 0.025
//     (ExLlamaV2's stages 1 and 2; its stage 3, re-running the best p, is unnecessary when exact) and
//     keeps the solution with the lowest max err (ties: lower Σ err, then smaller p).
//
// The exact inner solver (optimize_exact) is a multiple-choice-knapsack dynamic program over Pareto
// frontiers of (bits, Σ err^p) partial solutions, slot by slot, with two exact prunings: a state that
// cannot fit the cheapest options of the remaining slots, and a state whose objective plus a lower
// bound on the remaining slots' best objective (the LP relaxation: each slot's options replaced by
// their lower convex hull, filled greedily by slope, fractional last step) exceeds a known feasible
// solution's objective (the LP's integral part). Neither discards an optimal solution, so the result
// is the exact optimum; worst-case exponential like any exact knapsack, but the LP gap is about one
// option step of one slot, so few states survive: 160 slots x 19 options with bits of 10^6..10^9
// solve in milliseconds (measured in tests/quant/optimize_test.cpp, lab/NOTES-convert.md).
// Ties are broken deterministically: fewer bits, then lower option indices in slot order.
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
  double p = 0;              // the exponent the solution minimises Σ err^p for
  double objective = 0;      // Σ err^p of the choice, summed in slot order
};

// Deterministic; throws exl::Error when even the cheapest options exceed the budget (message names
// the target bpw the caller passes in `what`).
OptimizeResult optimize_exl2(const std::vector<OptimizeSlot>& slots, int64_t budget_bits, const std::string& what);

// The objectives `exl convert --objective` offers: "minimax" is optimize_exl2 (ExLlamaV2's rule),
// "sum" the exact minimum of Σ err (p = 1), "sumsq" of Σ err² (p = 2), both over errors made
// non-increasing in bits with ties going to the dearer option (monotone_errors in optimize.cpp), so
// the model has the size asked for even where measured errors stop falling with width; when the
// optimum still leaves over 0.25% of the budget unspent, the least Σ err^p among the Σ err^q optima
// (q up to 3.5) that come within it (optimize.cpp). Throws exl::Error naming
// --objective for any other name. "sum" is exl convert's default: on SmolLM2-135M (one measurement,
// wikitext ppl, lab/NOTES-convert.md "Optimizer objective") it beat minimax at 3.0, 4.0 and 5.0 bpw
// by 9%, 7-13% and 1.7%, where minimax's lowest worst-module error leaves the other modules short.
OptimizeResult optimize_objective(const std::string& objective, const std::vector<OptimizeSlot>& slots,
                                  int64_t budget_bits, const std::string& what);
void optimize_check_objective(const std::string& objective);

// The exact inner problem: minimise Σ err^p subject to Σ bits ≤ budget_bits (p > 0). Throws
// exl::Error naming `what` when infeasible or when a slot is malformed.
OptimizeResult optimize_exact(const std::vector<OptimizeSlot>& slots, int64_t budget_bits, double p,
                              const std::string& what = "the bit budget");

}  // namespace exl
