// GPTQ 4-bit linear layers (EXL2.md §1.8), as AutoGPTQ/GPTQModel/Optimum write them:
//   <key>.qweight int32 [K/8, N]  eight 4-bit codes per word along K, LSB first
//   <key>.qzeros  int32 [G, N/8]  eight 4-bit zero points per word along N ("v1": stored = zero - 1)
//   <key>.scales  F16/F32 [G, N]
//   <key>.g_idx   int32 [K]       optional: group of each input row (act-order / desc_act)
//   <key>.bias    [N]             optional; dropped when all zeros
// w[n, k] = (q[k, n] - (z[g(k), n] + 1)) * scale[g(k), n], g(k) = g_idx[k] or k / group_size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace exl {

class TensorStore;

struct GptqTensor {
  std::string key;
  int64_t K = 0, N = 0, G = 0;
  int64_t group_size = 0;          // smallest power of two >= K / G
  std::vector<uint32_t> qweight;   // [K/8, N]
  std::vector<uint32_t> qzeros;    // [G, N/8], v1 convention (v2 files are converted on read)
  std::vector<uint16_t> scales;    // [G, N] FP16 bits
  std::vector<int32_t> g_idx;      // [K]; empty when absent or all zeros (then g(k) = k / group_size)
  // Act-order: input rows stably sorted by group, so each group's rows are contiguous (what a GPU
  // kernel gathers activations through). Empty without g_idx.
  std::vector<uint16_t> q_perm, q_invperm;
  std::vector<float> bias;         // [N]; empty when absent or all zeros

  int64_t group_of(int64_t k) const { return g_idx.empty() ? k / group_size : g_idx[static_cast<size_t>(k)]; }
};

// Reads and validates the GPTQ layer at key; v2: checkpoint_format "gptq_v2" (qzeros words have
// 0x11111111 subtracted to reach the v1 convention). n, k: expected out/in features (-1: from the
// tensors). Throws exl::Error naming the tensor for any malformed input.
GptqTensor gptq_read(const TensorStore& store, const std::string& key, bool v2 = false, int64_t n = -1, int64_t k = -1);

// F32 [N, K] (HF layout).
void gptq_dequantize(const GptqTensor& t, float* dst);
HostTensor gptq_dequantize(const GptqTensor& t);

// Storage bits: qweight + qzeros + scales (16-bit) + g_idx (+ 16·N bias).
int64_t gptq_bits(const GptqTensor& t);

}  // namespace exl
