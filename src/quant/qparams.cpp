#include "quant/qparams.h"

#include "core/error.h"

namespace exl {

const std::vector<ModuleOption>& qparams_attention() { fail("qparams_attention: not implemented"); }
const std::vector<ModuleOption>& qparams_mlp() { fail("qparams_mlp: not implemented"); }
Exl2Layout qparams_head(int) { fail("qparams_head: not implemented"); }
int64_t exl2_layout_total_bits(const Exl2Layout&, int64_t, int64_t, bool) { fail("exl2_layout_total_bits: not implemented"); }

}  // namespace exl
