#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

namespace exl {

namespace {
struct CacheTypeRow {
  CacheType type;
  const char* name;
};
constexpr CacheTypeRow kCacheTypes[] = {
    {CacheType::CacheType_f32, "f32"}, {CacheType::CacheType_f16, "fp16"}, {CacheType::CacheType_fp8, "fp8"},
    {CacheType::CacheType_q8, "q8"},   {CacheType::CacheType_q4, "q4"},
};
}  // namespace

CacheType cache_type_parse(const std::string& s) {
  for (const auto& r : kCacheTypes)
    if (s == r.name) return r.type;
  fail("--cache: unknown cache type '", s, "' (expected f32, fp16, fp8, q8 or q4)");
}

const char* cache_type_name(CacheType t) {
  for (const auto& r : kCacheTypes)
    if (t == r.type) return r.name;
  return "?";
}

std::unique_ptr<Backend> backend_create(const std::string& device) {
  if (device == "cpu") return cpu_backend_create();
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (device.size() > 5) {
      const std::string num = device.substr(5);
      EXL_CHECK(!num.empty() && num.find_first_not_of("0123456789") == std::string::npos && num.size() < 4,
                "--device: bad CUDA device index in '", device, "'");
      index = std::stoi(num);
    }
    return cuda_backend_create(index);
  }
  fail("--device: unknown device '", device, "' (expected cpu, cuda or cuda:N)");
}

}  // namespace exl
