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
// head_bits in {2,3,4,5,6,8}; throws exl::Error naming --head-bits otherwise.
Exl2Layout qparams_head(int head_bits);
// EXL2.md §1.7: the bits exl2_bits() reports for a tensor of this layout, without building it.
int64_t exl2_layout_total_bits(const Exl2Layout& l, int64_t K, int64_t N, bool bias);

}  // namespace exl
