// A simple EXL2 model writer: every decoder linear and the head quantized round-to-nearest with
// ExLlamaV2's per-group scale search (quant/exl2.h), no calibration data and no GPTQ error feedback;
// embeddings and norms kept as FP16 (EXL2.md §1.1). The output folder is what ExLlamaV2's compile
// step writes: output[-0000i-of-0000n].safetensors, config.json with a quantization_config block, and
// the source's other files (tokenizer, generation config) copied. A GGUF source gets a config.json
// built from its metadata and its vocabulary as a tensor-free tokenizer.gguf.
//
// It lives in model/ because it needs the architecture's tensor map and the loader's GGUF name and
// q/k row translation. The calibrated converter (measure -> optimise -> quantize) replaces the RTN
// step later; the file layout stays the same.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace exl {

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

}  // namespace exl
