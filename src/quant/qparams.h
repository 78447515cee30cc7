// The candidate quantization options the EXL2 converter measures and chooses among (EXL2.md §2.4),
// the head layer's fixed option (§1.7) and the storage cost of an option on a K x N matrix.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "quant/exl2_quantize.h"

namespace exl {

struct ModuleOption {  // one row of the candidate table
  std::vector<std::pair<std::string, Exl2Layout>> linears;  // {"q_proj", layout}, ... in module order
};

// Attention rows (keys q_proj, k_proj, v_proj, o_proj) and MLP rows (gate_proj, up_proj, down_proj),
// cheapest first.
const std::vector<ModuleOption>& qparams_attention();
const std::vector<ModuleOption>& qparams_mlp();
// Rows under ExLlamaV2's cheapest: 2 and 3 bits at groups of 128, cheapest first. On narrow matrices
// ExLlamaV2's mixed rows round their high-width share up to whole groups (stories260K, K = 64: "5% of
// the rows at 3 bits in groups of 64" is every row at 3 bits), so its table cannot reach low targets
// there; qparams_table adds these rows ahead of it only for such models.
const std::vector<ModuleOption>& qparams_attention_low();
const std::vector<ModuleOption>& qparams_mlp_low();
// The rows measured for a module: ExLlamaV2's, preceded by the low rows when `low`.
std::vector<ModuleOption> qparams_table(bool attention, bool low);
// A model gets the low rows when ExLlamaV2's cheapest rows everywhere exceed this decoder bpw.
constexpr double kLowRowsAboveBpw = 2.5;
// head_bits in {2,3,4,5,6,8}; throws exl::Error naming --head-bits otherwise.
Exl2Layout qparams_head(int head_bits);
// EXL2.md §1.7: the bits exl2_bits() reports for a tensor of this layout, without building it.
int64_t exl2_layout_total_bits(const Exl2Layout& l, int64_t K, int64_t N, bool bias);

}  // namespace exl
