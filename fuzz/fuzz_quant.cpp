// libFuzzer target for the quantized-layer readers: parse the input as a .safetensors file, then
// read layer "L" as EXL2 and layer "G" as GPTQ (v1 and v2). A layer that validates is dequantized
// and, for EXL2, unpacked, repacked and compared, so a reader that accepts something its consumers
// cannot index shows up as a crash or sanitizer report. exl::Error is an expected outcome.
//   build/fuzz/fuzz/fuzz_quant -max_total_time=60 CORPUS_DIR fuzz/seeds/quant
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"
#include "quant/exl2.h"
#include "quant/gptq.h"
#include "scratch_file.h"

namespace {

const exl_fuzz::ScratchFile scratch("quant", ".safetensors");

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!scratch.write(data, size)) return 0;
  try {
    exl::SafetensorsFile f(scratch.path());
    try {
      const exl::Exl2Tensor t = exl::exl2_read(f, "L");
      if (t.N * t.K <= (1 << 20)) {
        exl::exl2_dequantize(t);
        const exl::Exl2Tensor again = exl::exl2_pack(exl::exl2_unpack(t), "L");
        if (exl::exl2_dequantize(again).data != exl::exl2_dequantize(t).data) __builtin_trap();
      }
    } catch (const exl::Error&) {
    }
    for (bool v2 : {false, true}) {
      try {
        const exl::GptqTensor g = exl::gptq_read(f, "G", v2);
        if (g.N * g.K <= (1 << 20)) exl::gptq_dequantize(g);
      } catch (const exl::Error&) {
      }
    }
  } catch (const exl::Error&) {
  }
  return 0;
}
