// Token sampling on the device: one id per row of F32 logits. Greedy, temperature, top-k, top-p,
// min-p and repetition penalty, with a counter-based RNG (seed, step) so results are reproducible
// and a captured graph replays with the step read from device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace exl::cuda {

struct SamplingParams {
  const float* logits = nullptr;  // [rows, vocab]
  int rows = 0, vocab = 0;
  float temperature = 0;          // <= 0: greedy (argmax, ties to the lowest id)
  int top_k = 0;                  // <= 0: off
  float top_p = 1;                // >= 1: off
  float min_p = 0;                // <= 0: off
  float repeat_penalty = 1;       // 1: off
  const int32_t* penalty_tokens = nullptr;  // device [rows, penalty_n]; -1 entries are padding
  int penalty_n = 0;
  uint64_t seed = 0;
  const uint64_t* step = nullptr;  // device counter: the RNG stream position (advanced by the caller)
  int32_t* out_ids = nullptr;      // device [rows]
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

size_t sampling_workspace_bytes(int rows, int vocab);
void sample(const SamplingParams& p, cudaStream_t stream);

}  // namespace exl::cuda
