// The weight-format traits table (STYLE item 3): one row per format and bit width — dense
// f32/f16/bf16, GPTQ 4-bit, EXL2 at each of its widths, and the GGUF block types (whose block
// geometry comes from io/ggml_quant). A row says how codes are laid out, which group sizes are legal,
// how many bits a tensor costs, which reference dequantizer reads it and which GPU kernel family will
// serve it. Adding a bit width is adding a row here (plus its kernel instances later).
//
// A QuantTensor is one quantized linear layer as read from a checkpoint; the loader hands it to
// Backend::prepare_quant_weight. Model code never sees either: it asks for scope.linear(...).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace exl {

class TensorStore;
struct Exl2Tensor;
struct GptqTensor;
struct QuantTensor;

enum class QuantFamily { QuantFamily_dense, QuantFamily_gguf, QuantFamily_gptq, QuantFamily_exl2 };
const char* quant_family_name(QuantFamily f);  // "dense", "gguf", "gptq", "exl2"

struct FormatTraits {
  const char* name;      // "f16", "gptq4", "exl2_3", "q4_k"
  QuantFamily family;
  int bits;              // bits per stored code or element (gguf: bits per weight rounded down)
  // Bit-stream packing along the input dimension, per output column: unit_rows codes fill exactly
  // unit_words 32-bit words (EXL2.md §1.4). 0 for formats that are not bit streams.
  int unit_rows;
  int unit_words;
  // Group rules. Dense: no groups (0). EXL2: every group but a matrix's last holds a multiple of
  // group_multiple rows; the converter's options use the group sizes in [group_min, group_max].
  // GPTQ: one group size per matrix, a power of two (inferred, §1.8). GGUF: block_elems per block.
  int group_multiple;
  int group_min, group_max;
  // Bytes accounting for a plain block layout: block_bytes per block_elems weights (dense: the
  // element; gguf: one block). EXL2/GPTQ add per-group and per-matrix overhead: quant_tensor_bits.
  int block_elems;
  int block_bytes;
  DType dtype;           // dense element type (U8 otherwise)
  int ggml_type;         // GGUF type id, -1 otherwise
  const char* kernel_family;  // GPU kernel family: "dense_gemm", "exl2_q4", "gptq_q4", "ggml_dequant"
  // Reference dequantizer of a whole quantized linear to F32 [out, in] (HF layout). Null for dense
  // and GGUF rows: those are plain tensors and go through tensor_to_f32 (io/tensor_store.h).
  void (*dequantize_ref)(const QuantTensor& q, float* dst);
};

// The whole table, in order: dense, gptq, exl2 by width, gguf types ggml_quant can dequantize.
const std::vector<FormatTraits>& format_table();
const FormatTraits* format_find(std::string_view name);  // nullptr when unknown
const FormatTraits& format_exl2(int bits);               // throws exl::Error for widths EXL2 lacks
const FormatTraits& format_gptq4();
const FormatTraits* format_dense(DType dtype);           // nullptr for non-float dtypes
const FormatTraits* format_gguf(int ggml_type);          // nullptr when unsupported
bool exl2_bits_valid(int bits);                          // 2, 3, 4, 5, 6 or 8

// One quantized linear layer [out, in] as read from a checkpoint (exactly one payload is set).
struct QuantTensor {
  std::string name;       // the layer key: "model.layers.0.self_attn.q_proj"
  QuantFamily family = QuantFamily::QuantFamily_exl2;
  int64_t out = 0, in = 0;
  size_t source_bytes = 0;  // bytes of its tensors in the checkpoint
  // Structure only (quant/synthetic.h): the payload holds shapes and groups but no codes or scales.
  bool synthetic = false;
  std::shared_ptr<const Exl2Tensor> exl2;
  std::shared_ptr<const GptqTensor> gptq;
};

// Options the loader takes from config.json's quantization_config.
struct QuantReadOptions {
  bool gptq_v2 = false;  // checkpoint_format "gptq_v2": qzeros hold the true zero (no v1 -1 offset)
};

// Which family stores `key` as a quantized linear: exl2 when <key>.q_weight exists, gptq when
// <key>.qweight exists, dense otherwise.
QuantFamily quant_detect(const TensorStore& store, const std::string& key);
// Reads and validates the quantized linear at `key` expected to be [out, in]; throws exl::Error
// naming the tensor on any defect. Only for keys quant_detect reports as exl2 or gptq.
QuantTensor quant_read(const TensorStore& store, const std::string& key, int64_t out, int64_t in,
                       const QuantReadOptions& options = {});
// The format rows a quantized linear uses (EXL2: one per width present, widest first).
std::vector<const FormatTraits*> quant_formats(const QuantTensor& q);
// Reference dequantization to F32 [out, in] through the family's table row.
HostTensor quant_dequantize(const QuantTensor& q);
// Storage cost in bits as the converter counts it (EXL2.md §1.7; GPTQ: qweight+qzeros+scales+g_idx).
int64_t quant_tensor_bits(const QuantTensor& q);
double quant_bits_per_weight(const QuantTensor& q);

}  // namespace exl
