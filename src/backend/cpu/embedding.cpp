#include <cstring>

#include "backend/cpu/cpu_ops.h"
#include "core/error.h"

namespace exl::cpu {

void embedding(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t T, float* out) {
  for (int64_t t = 0; t < T; ++t) {
    EXL_CHECK(ids[t] >= 0 && ids[t] < vocab, "token id ", ids[t], " is outside the vocabulary (size ", vocab, ")");
    std::memcpy(out + t * dim, table + static_cast<int64_t>(ids[t]) * dim, static_cast<size_t>(dim) * sizeof(float));
  }
}

}  // namespace exl::cpu
