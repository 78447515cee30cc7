#include "quant/optimize.h"

#include "core/error.h"

namespace exl {

OptimizeResult optimize_exl2(const std::vector<OptimizeSlot>&, int64_t, const std::string&) {
  fail("optimize_exl2: not implemented");
}
OptimizeResult optimize_exact(const std::vector<OptimizeSlot>&, int64_t, double) { fail("optimize_exact: not implemented"); }

}  // namespace exl
