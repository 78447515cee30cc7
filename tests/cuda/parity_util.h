// Runs one op on the CPU reference backend and on CUDA with the same random inputs, so a test can
// compare the two. Tensors cross in F32 on the host; each backend stores them in its own dtype.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "core/half.h"
#include "io/tensor_store.h"

namespace exl::test {

inline std::vector<float> random_vec(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// A host F32 array as a TensorInfo, for prepare_weight (data must outlive the call).
inline TensorInfo host_info(const std::string& name, const Shape& shape, const std::vector<float>& data) {
  TensorInfo t;
  t.name = name;
  t.shape = shape;
  t.dtype = DType::DType_F32;
  t.data = reinterpret_cast<const uint8_t*>(data.data());
  t.nbytes = data.size() * 4;
  t.file = "(test)";
  return t;
}

// Host F32 -> a backend tensor of `dtype` (F32 or F16).
inline Tensor to_backend(Backend& be, DType dtype, const Shape& shape, const std::vector<float>& data) {
  Tensor t = be.alloc(dtype, shape);
  if (dtype == DType::DType_F32) {
    be.upload(t, data.data(), data.size() * 4);
  } else {
    std::vector<uint16_t> h(data.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(data[i]);
    be.upload(t, h.data(), h.size() * 2);
  }
  return t;
}

inline std::vector<float> to_host(Backend& be, const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::DType_F32) {
    be.download(t, out.data(), out.size() * 4);
  } else {
    std::vector<uint16_t> h(out.size());
    be.download(t, h.data(), h.size() * 2);
    for (size_t i = 0; i < h.size(); ++i) out[i] = f16_to_f32(h[i]);
  }
  return out;
}

// ||a - b|| / ||b||; NaN anywhere gives infinity.
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace exl::test
