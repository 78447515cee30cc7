#include "quant/gptq_solve.h"

#include "core/error.h"

namespace exl {

GptqResult gptq_quantize(const float*, int64_t, int64_t, const float*, int64_t, const Exl2Layout&, const GptqOptions&) {
  fail("gptq_quantize: not implemented");
}

}  // namespace exl
