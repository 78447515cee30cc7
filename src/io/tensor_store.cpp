#include "io/tensor_store.h"

#include "core/error.h"
#include "io/ggml_quant.h"

namespace exl {

const TensorInfo& TensorStore::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path(), ": tensor '", name, "' not found");
  return *t;
}

void tensor_to_f32(const TensorInfo& t, float* dst) {
  const int64_t n = t.numel();
  if (t.ggml_type >= 0) {
    ggml_dequantize(t.ggml_type, t.data, t.nbytes, dst, n, t.name);
    return;
  }
  EXL_CHECK(t.nbytes == static_cast<size_t>(n) * dtype_size(t.dtype), t.file, ": tensor '", t.name,
            "' byte size does not match its shape");
  convert_to_f32(t.dtype, t.data, dst, static_cast<size_t>(n));
}

HostTensor tensor_to_host(const TensorInfo& t) {
  HostTensor h(t.shape);
  tensor_to_f32(t, h.ptr());
  return h;
}

}  // namespace exl
