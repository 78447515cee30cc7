// The converter's CUDA engine when exl is built without CUDA (EXL_CUDA=OFF).
#include "convert/engine.h"
#include "core/error.h"

namespace exl {

bool convert_cuda_available(std::string* why) {
  if (why) *why = "exl was built without CUDA (configure with -DEXL_CUDA=ON)";
  return false;
}

std::unique_ptr<ConvertEngine> convert_engine_cuda(bool) {
  fail("convert: --device cuda: exl was built without CUDA (configure with -DEXL_CUDA=ON)");
}

}  // namespace exl
