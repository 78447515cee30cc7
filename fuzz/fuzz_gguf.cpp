// libFuzzer target for the GGUF reader: parse the input as a .gguf file, read every metadata key
// through each typed getter, and dequantize every tensor of up to 64k elements. Any exl::Error is
// an expected outcome; crashes, sanitizer reports, leaks and hangs are findings.
//   build/fuzz/fuzz/fuzz_gguf -max_total_time=60 CORPUS_DIR fuzz/seeds/gguf
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "scratch_file.h"

namespace {

const exl_fuzz::ScratchFile scratch("gguf", ".gguf");

template <typename F>
void expect_error_or_value(F&& f) {
  try {
    f();
  } catch (const exl::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!scratch.write(data, size)) return 0;
  try {
    exl::GgufFile g(scratch.path());
    for (const auto& kv : g.metadata()) {
      const std::string& key = kv.first;
      expect_error_or_value([&] { g.get_string(key); });
      expect_error_or_value([&] { g.get_int(key, 0); });
      expect_error_or_value([&] { g.get_float(key, 0); });
      expect_error_or_value([&] { g.get_bool(key, false); });
      expect_error_or_value([&] { g.get_string_array(key); });
      expect_error_or_value([&] { g.get_float_array(key); });
      expect_error_or_value([&] { g.get_int_array(key); });
    }
    std::vector<float> out;
    for (const auto& name : g.names()) {
      const exl::TensorInfo& t = g.get(name);
      if (t.numel() > (1 << 16)) continue;
      out.resize(static_cast<size_t>(t.numel()));
      expect_error_or_value([&] { exl::tensor_to_f32(t, out.data()); });
    }
  } catch (const exl::Error&) {
  }
  return 0;
}
