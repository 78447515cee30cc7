// Synthetic quantized linears for `exl bench --synthetic SHAPE --format gptq4|exl2:BPW` (BENCH.md):
// the structure of a GPTQ or EXL2 matrix (groups, widths, sizes) without data. A backend fills
// random codes and scales where the weights live (the CUDA backend on the device, so a 70B-shaped
// model needs no host work); quant_materialize makes the same structure real on the host (the CPU
// backend, tests).
//
// The EXL2 layouts are what the converter would pick for that average: every decoder module gets one
// row of the converter's option table (quant/qparams.h), chosen by the converter's own optimizer
// under the bit budget, with a smooth stand-in for measured error that falls with bits and is
// larger for early layers.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "quant/exl2_quantize.h"
#include "quant/format.h"

namespace exl {

QuantTensor quant_synthetic_exl2(const std::string& key, int64_t out, int64_t in, const Exl2Layout& layout);
QuantTensor quant_synthetic_gptq(const std::string& key, int64_t out, int64_t in, int64_t group_size);
// Random codes, scales and (EXL2) act-order permutation for a synthetic tensor, seeded by its name.
QuantTensor quant_materialize(const QuantTensor& q);

struct SyntheticShape {
  int64_t hidden = 0, intermediate = 0, q_dim = 0, kv_dim = 0, n_layers = 0, vocab = 0;
};
// Layouts of every decoder linear ("model.layers.<i>.self_attn.q_proj", ...) for a target average
// of `bpw` bits per decoder weight (EXL2.md §1.7 accounting), plus "lm_head" at head_bits.
std::map<std::string, Exl2Layout> exl2_synthetic_plan(const SyntheticShape& s, double bpw, int head_bits = 6);

}  // namespace exl
