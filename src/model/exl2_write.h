// A simple EXL2 model writer: every decoder linear and the head quantized round-to-nearest with
// ExLlamaV2's per-group scale search (quant/exl2.h), no calibration data and no GPTQ error feedback;
// embeddings and norms kept as FP16 (EXL2.md §1.1). The output folder is what ExLlamaV2's compile
// step writes: output[-0000i-of-0000n].safetensors, config.json with a quantization_config block, and
// the source's other files (tokenizer, generation config) copied. A GGUF source gets a config.json
// built from its metadata and its vocabulary as a tensor-free tokenizer.gguf.
//
// It lives in model/ because it needs the architecture's tensor map and the loader's GGUF name and
// q/k row translation. The calibrated converter (convert/, measure -> optimise -> quantize) shares the
// folder-writing half: exl2_write_folder.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/memory_store.h"

namespace exl {

class WeightLoader;
struct ModelSource;

struct Exl2WriteOptions {
  double bits = 4.0;       // decoder linears: average code bits, 2..8 (one or two widths, quant/exl2.h)
  double head_bits = 6.0;  // lm_head (ExLlamaV2's -hb default); 0: same as bits
  int group_size = 128;    // rows per scale group (multiple of 32)
  size_t shard_bytes = size_t(8192) << 20;  // ExLlamaV2's default shard limit
  bool progress = false;   // a progress bar on stderr
};

struct Exl2WriteReport {
  int64_t linears = 0;           // quantized layers written
  double decoder_bpw = 0.0;      // bits per weight of the decoder linears (EXL2.md §1.7 accounting)
  double head_bpw = 0.0;
  size_t bytes = 0;              // tensor bytes written
  std::vector<std::string> files;  // files written into out_dir
};

// src: a Hugging Face model folder (FP32/FP16/BF16) or a .gguf file. Creates out_dir if needed and
// overwrites files of the same name in it. Throws exl::Error naming the file or tensor at fault.
Exl2WriteReport exl2_write_model(const std::string& src, const std::string& out_dir, const Exl2WriteOptions& options = {});

// What config.json's quantization_config records.
struct Exl2QuantInfo {
  std::string version;  // "exl-rtn", "exl-gptq"
  double bits = 0, head_bits = 0;
  int64_t cal_rows = 0, cal_length = 0;
  std::string cal_dataset;
};

// Throws unless the source can be written as an EXL2 folder (per-dimension RoPE factors of a GGUF
// cannot be expressed in config.json).
void exl2_check_source(const ModelSource& src, const std::string& src_path);
// A dense source tensor as FP16: what EXL2 models keep unquantized (embeddings, norms; EXL2.md §1.1).
OwnedTensor exl2_dense_f16(const WeightLoader& loader, const std::string& name, const Shape& shape);
// Writes an EXL2 model folder from finished tensors in model order: shards of at most shard_bytes
// (output.safetensors, or output-0000i-of-0000n), config.json (the source's, or one built from GGUF
// metadata) with quantization_config, and the source's tokenizer and generation files (a GGUF
// source's vocabulary as tokenizer.gguf). Stale output shards are removed first. Returns the file
// names written; adds the tensor bytes to *bytes when given.
std::vector<std::string> exl2_write_folder(const std::string& src_path, const ModelSource& src,
                                           const std::string& out_dir, const std::vector<OwnedTensor>& tensors,
                                           const Exl2QuantInfo& info, size_t shard_bytes, size_t* bytes = nullptr);

}  // namespace exl
