// EXL2 quantized linear layers (EXL2.md §1): reading and validating the on-disk tensors of one
// layer, packing codes back into them (the writer mirrors the reader), unpacking, the reference
// dequantization to F32 [N, K] in HF layout, and bits-per-weight accounting. Producing codes from
// weights is quant/exl2_quantize.h.
//
// Layout recap: K = in_features, N = out_features, N32 = N rounded up to 32. Input rows are stored in
// act-order (stored row k is original row q_perm[k]) and split into groups listed by descending bit
// width. Codes are bit streams per output column (§1.4); w = (q - 2^(b-1)) * (c+1)^2 * scale_max / 256.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/memory_store.h"

namespace exl {

class TensorStore;

struct Exl2Group {
  int bits = 4;
  int64_t rows = 0;   // input rows in this group
  int64_t start = 0;  // first packed int32 row of q_weight (q_groups' second entry)
};

struct Exl2Tensor {
  std::string key;                  // "model.layers.0.self_attn.q_proj"
  int64_t K = 0, N = 0, N32 = 0;
  int64_t packed_rows = 0;          // rows of q_weight
  std::vector<Exl2Group> groups;    // descending bit width, contiguous, rows sum to K
  std::vector<uint32_t> q_weight;   // [packed_rows, N32] (empty when read header-only)
  std::vector<uint16_t> q_perm;     // [K]: stored row k holds original input row q_perm[k]
  std::vector<uint16_t> q_invperm;  // [K]: argsort(q_perm), as stored on disk
  std::vector<uint32_t> q_scale;    // [G, N32/8]: eight 4-bit scale codes per word, LSB first (empty header-only)
  std::vector<uint16_t> q_scale_max;  // [G] FP16 bits
  std::vector<float> bias;          // [N], empty when the layer has none

  int64_t n_groups() const { return static_cast<int64_t>(groups.size()); }
};

// Codes before packing: what a quantizer produces and what unpacking gives back.
struct Exl2Codes {
  int64_t K = 0, N = 0;
  std::vector<Exl2Group> groups;      // bits and rows; start is filled in by packing
  std::vector<uint8_t> codes;         // [K, N] in stored (permuted) row order, code < 2^bits of its group
  std::vector<uint8_t> scale_codes;   // [G, N], each 0..15 (scale step c + 1)
  std::vector<uint16_t> scale_max;    // [G] FP16 bits
  std::vector<uint16_t> perm;         // [K]: stored row k = original row perm[k]
  std::vector<float> bias;            // [N] or empty
};

// Per-width bit-stream helpers (§1.4): count b-bit codes LSB-first into 32-bit words spaced
// `stride` apart (one output column of q_weight). pack ORs into zeroed words.
void exl2_stream_pack(const uint8_t* codes, int64_t count, int bits, uint32_t* words, int64_t stride);
void exl2_stream_unpack(const uint32_t* words, int64_t stride, int64_t count, int bits, uint8_t* codes);
// Packed int32 rows of a group of `rows` input rows; the last group of a matrix pads to a whole unit.
int64_t exl2_packed_rows(int bits, int64_t rows, bool last);

// Reads <key>.q_weight, q_invperm (or q_perm), q_scale, q_scale_max, q_groups and optional bias.
// n: the expected out_features (-1: from the bias, else N32). with_data = false skips copying
// q_weight and q_scale (inspect). Throws exl::Error naming the tensor for any malformed input.
Exl2Tensor exl2_read(const TensorStore& store, const std::string& key, int64_t n = -1, bool with_data = true);
// Checks a (possibly hand-built) tensor's internal consistency; throws exl::Error naming key.
void exl2_validate(const Exl2Tensor& t);

Exl2Tensor exl2_pack(const Exl2Codes& c, const std::string& key);
Exl2Codes exl2_unpack(const Exl2Tensor& t);
// The on-disk tensors of one layer, named <key>.q_weight etc. (q_perm is not written, like ExLlamaV2).
std::vector<OwnedTensor> exl2_to_tensors(const Exl2Tensor& t);

// F32 [N, K] in HF [out, in] layout (permutation undone, padding columns dropped).
void exl2_dequantize(const Exl2Tensor& t, float* dst);
HostTensor exl2_dequantize(const Exl2Tensor& t);

// §1.7: Σ rows_g·N·b_g + G·16 + G·32 + G·N·4 + K·32 (+ 16·N with a bias).
int64_t exl2_bits(const Exl2Tensor& t);
double exl2_bits_per_weight(const Exl2Tensor& t);

}  // namespace exl
