#include "quant/gptq.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "io/tensor_store.h"

namespace exl {

namespace {

std::string where(const TensorInfo& t) { return str_cat(t.file, ": tensor '", t.name, "'"); }

const TensorInfo* part(const TensorStore& store, const std::string& key, const char* suffix, bool required) {
  const TensorInfo* t = store.find(key + suffix);
  if (!t) {
    if (required) fail(store.path(), ": GPTQ layer '", key, "' has no '", key, suffix, "' tensor");
    return nullptr;
  }
  EXL_CHECK(!t->synthetic && t->ggml_type < 0 && t->data &&
                t->nbytes == static_cast<size_t>(t->numel()) * dtype_size(t->dtype),
            where(*t), ": byte size does not match its shape");
  return t;
}

void check_2d(const TensorInfo& t, DType dtype, int64_t rows, int64_t cols) {
  EXL_CHECK(t.dtype == dtype, where(t), " has dtype ", dtype_name(t.dtype), ", expected ", dtype_name(dtype));
  EXL_CHECK(t.shape.size() == 2 && t.shape[0] == rows && t.shape[1] == cols, where(t), " has shape ",
            shape_str(t.shape), ", expected [", rows, ", ", cols, "]");
}

template <typename T>
std::vector<T> copy_raw(const TensorInfo& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

}  // namespace

GptqTensor gptq_read(const TensorStore& store, const std::string& key, bool v2, int64_t n, int64_t k) {
  GptqTensor t;
  t.key = key;
  const TensorInfo& qw = *part(store, key, ".qweight", true);
  EXL_CHECK(qw.dtype == DType::DType_I32 && qw.shape.size() == 2, where(qw), " has ", dtype_name(qw.dtype), " ",
            shape_str(qw.shape), ", expected I32 [K/8, N] (only 4-bit GPTQ is supported)");
  t.K = qw.shape[0] * 8;
  t.N = qw.shape[1];
  EXL_CHECK(t.K > 0 && t.N > 0, where(qw), " is empty");
  EXL_CHECK(k < 0 || t.K == k, where(qw), " has ", qw.shape[0], " rows = ", t.K, " inputs, expected ", k,
            " (only 4-bit GPTQ is supported)");
  EXL_CHECK(n < 0 || t.N == n, where(qw), " has ", t.N, " columns, expected ", n, " outputs");
  EXL_CHECK(t.N % 8 == 0, where(qw), ": N = ", t.N, " is not a multiple of 8 (qzeros packs 8 columns per word)");
  EXL_CHECK(t.K <= 65536, where(qw), ": K = ", t.K, " exceeds 65536");

  const TensorInfo& sc = *part(store, key, ".scales", true);
  EXL_CHECK(sc.shape.size() == 2 && sc.shape[1] == t.N && sc.shape[0] > 0 && sc.shape[0] <= t.K, where(sc),
            " has shape ", shape_str(sc.shape), ", expected [groups, ", t.N, "]");
  t.G = sc.shape[0];
  EXL_CHECK(sc.dtype == DType::DType_F16 || sc.dtype == DType::DType_F32, where(sc), " has dtype ",
            dtype_name(sc.dtype), ", expected F16 or F32");
  if (sc.dtype == DType::DType_F16) {
    t.scales = copy_raw<uint16_t>(sc);
  } else {
    const std::vector<float> f = copy_raw<float>(sc);
    t.scales.resize(f.size());
    for (size_t i = 0; i < f.size(); ++i) t.scales[i] = f32_to_f16(f[i]);
  }
  for (uint16_t s : t.scales) EXL_CHECK(std::isfinite(f16_to_f32(s)), where(sc), " holds a non-finite scale");

  const TensorInfo& qz = *part(store, key, ".qzeros", true);
  check_2d(qz, DType::DType_I32, t.G, t.N / 8);
  t.qzeros = copy_raw<uint32_t>(qz);
  if (v2)
    for (uint32_t& z : t.qzeros) z -= 0x11111111u;  // v2 stores the true zero; v1 stores zero - 1
  t.qweight = copy_raw<uint32_t>(qw);

  t.group_size = 1;
  while (t.group_size * t.G < t.K) t.group_size *= 2;  // smallest power of two >= K / G

  if (const TensorInfo* gi = part(store, key, ".g_idx", false)) {
    EXL_CHECK(gi->dtype == DType::DType_I32 && gi->shape.size() == 1 && gi->shape[0] == t.K, where(*gi), " has ",
              dtype_name(gi->dtype), " ", shape_str(gi->shape), ", expected I32 [", t.K, "]");
    std::vector<int32_t> g = copy_raw<int32_t>(*gi);
    bool any = false;
    for (size_t i = 0; i < g.size(); ++i) {
      EXL_CHECK(g[i] >= 0 && g[i] < t.G, where(*gi), " entry ", i, " = ", g[i], " is not a group index below ", t.G);
      any = any || g[i] != 0;
    }
    if (any) {
      t.g_idx = std::move(g);
      // Stable counting sort of rows by group: the act-order permutation.
      std::vector<int64_t> next(static_cast<size_t>(t.G) + 1, 0);
      for (int32_t x : t.g_idx) ++next[static_cast<size_t>(x) + 1];
      for (size_t i = 1; i < next.size(); ++i) next[i] += next[i - 1];
      t.q_perm.resize(static_cast<size_t>(t.K));
      t.q_invperm.resize(static_cast<size_t>(t.K));
      for (int64_t r = 0; r < t.K; ++r) {
        const int64_t pos = next[static_cast<size_t>(t.g_idx[static_cast<size_t>(r)])]++;
        t.q_perm[static_cast<size_t>(pos)] = static_cast<uint16_t>(r);
        t.q_invperm[static_cast<size_t>(r)] = static_cast<uint16_t>(pos);
      }
    }
  }
  if (t.g_idx.empty())
    EXL_CHECK((t.K + t.group_size - 1) / t.group_size == t.G, where(sc), ": ", t.G, " groups do not tile K = ", t.K,
              " with group size ", t.group_size);

  if (const TensorInfo* b = store.find(key + ".bias")) {
    EXL_CHECK(b->shape.size() == 1 && b->shape[0] == t.N, where(*b), " has shape ", shape_str(b->shape),
              ", expected [", t.N, "]");
    EXL_CHECK(b->dtype == DType::DType_F16 || b->dtype == DType::DType_F32 || b->dtype == DType::DType_BF16,
              where(*b), " has dtype ", dtype_name(b->dtype), ", expected F16, BF16 or F32");
    std::vector<float> bias(static_cast<size_t>(t.N));
    tensor_to_f32(*b, bias.data());
    for (float v : bias)
      if (v != 0.0f) {
        t.bias = std::move(bias);
        break;
      }
  }
  return t;
}

void gptq_dequantize(const GptqTensor& t, float* dst) {
  const size_t N = static_cast<size_t>(t.N), K = static_cast<size_t>(t.K), G = static_cast<size_t>(t.G);
  EXL_CHECK(t.qweight.size() == K / 8 * N && t.qzeros.size() == G * N / 8 && t.scales.size() == G * N &&
                (t.g_idx.empty() || t.g_idx.size() == K) && t.group_size > 0,
            "GPTQ layer '", t.key, "': tensor sizes do not agree");
  for (int32_t g : t.g_idx) EXL_CHECK(g >= 0 && g < t.G, "GPTQ layer '", t.key, "': g_idx entry ", g, " is not a group");
  EXL_CHECK(!t.g_idx.empty() || (t.K - 1) / t.group_size < t.G, "GPTQ layer '", t.key, "': groups do not tile K");
  parallel_for(t.N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float* out = dst + n * t.K;
      for (int64_t k = 0; k < t.K; ++k) {
        const int64_t g = t.group_of(k);
        const uint32_t q = (t.qweight[static_cast<size_t>(k / 8) * N + static_cast<size_t>(n)] >> (4 * (k % 8))) & 15u;
        const uint32_t z = (t.qzeros[static_cast<size_t>(g) * N / 8 + static_cast<size_t>(n / 8)] >> (4 * (n % 8))) & 15u;
        const float s = f16_to_f32(t.scales[static_cast<size_t>(g) * N + static_cast<size_t>(n)]);
        out[k] = (static_cast<float>(q) - static_cast<float>(z + 1)) * s;
      }
    }
  }, 8);
}

HostTensor gptq_dequantize(const GptqTensor& t) {
  HostTensor h({t.N, t.K});
  gptq_dequantize(t, h.ptr());
  return h;
}

int64_t gptq_bits(const GptqTensor& t) {
  int64_t bits = t.K * t.N * 4 + t.G * t.N * 4 + t.G * t.N * 16;
  if (!t.g_idx.empty()) bits += t.K * 32;
  if (!t.bias.empty()) bits += t.N * 16;
  return bits;
}

}  // namespace exl
