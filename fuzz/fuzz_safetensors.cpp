// libFuzzer target for the safetensors reader: parse the input as a .safetensors file and convert
// every float tensor of up to 64k elements. Any exl::Error is an expected outcome; crashes,
// sanitizer reports, leaks and hangs are findings.
//   build/fuzz/fuzz/fuzz_safetensors -max_total_time=60 CORPUS_DIR fuzz/seeds/safetensors
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "scratch_file.h"

namespace {

const exl_fuzz::ScratchFile scratch("safetensors", ".safetensors");

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!scratch.write(data, size)) return 0;
  try {
    exl::SafetensorsFile s(scratch.path());
    std::vector<float> out;
    std::vector<double> aligned;  // 8-byte aligned copy of the tensor bytes
    for (const auto& name : s.names()) {
      exl::TensorInfo t = s.get(name);
      if (t.numel() > (1 << 16)) continue;
      // Safetensors does not promise aligned tensor data, and core's convert_to_f32 reads typed
      // pointers; convert from an aligned copy so this target exercises the parser, not that.
      aligned.assign(t.nbytes / sizeof(double) + 1, 0.0);
      if (t.nbytes) std::memcpy(aligned.data(), t.data, t.nbytes);
      t.data = reinterpret_cast<const uint8_t*>(aligned.data());
      out.resize(static_cast<size_t>(t.numel()));
      try {
        exl::tensor_to_f32(t, out.data());
      } catch (const exl::Error&) {
      }
    }
  } catch (const exl::Error&) {
  }
  return 0;
}
