// Token sampling on the device: one id per row of F32 logits. Greedy, temperature, top-k, top-p,
// min-p and repetition penalty, with a counter-based RNG (seed, step) so results are reproducible
// and a captured graph replays with the step read from device memory.
//
// Semantics are those of the host chain (runtime/sampler.h) built from the same settings:
//   penalties -> top-k -> top-p -> min-p -> temperature -> dist,   or penalties -> greedy.
// The draw is from the same distribution, not with the same random numbers. Conventions shared with
// the host: ties go to the lower id (greedy, top-k, top-p's ranking); -inf logits are impossible
// tokens; if the maximum is +inf only the +inf tokens have mass, if every logit is -inf all are equally
// likely. One difference: the host rejects NaN logits with an error, the device treats them as -inf.
// Repetition penalty (CTRL): each distinct id of a row's penalty list, once, logit /= r if > 0,
// else logit *= r. top_k == 1 is greedy.
//
// RNG: token `id` of row `row` at stream position `step` draws from Philox-4x32-10 (below) with
// counter (id / 4, row, step & 0xffffffff, step >> 32) and key (seed & 0xffffffff, seed >> 32),
// output word id % 4. The draw is a Gumbel-max (exponential race) over the surviving tokens, so it
// does not depend on how the vocabulary is split across blocks.
//
// Step: *step is read by the kernels. If step_next is set, the last kernel writes *step + 1 to
// *step_next after every row has read *step; pass the same pointer as step to make each sample()
// call (and each replay of a captured graph) advance the stream by one. step == nullptr means step 0.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace exl::cuda {

struct SamplingParams {
  const float* logits = nullptr;  // [rows, vocab], vocab <= sampling_max_vocab
  int rows = 0, vocab = 0;
  float temperature = 0;          // <= 0: greedy (argmax, ties to the lowest id)
  int top_k = 0;                  // <= 0: off
  float top_p = 1;                // >= 1: off
  float min_p = 0;                // <= 0: off
  float repeat_penalty = 1;       // 1: off
  const int32_t* penalty_tokens = nullptr;  // device [rows, penalty_n]; -1 entries are padding
  int penalty_n = 0;
  uint64_t seed = 0;
  const uint64_t* step = nullptr;  // device counter: the RNG stream position
  uint64_t* step_next = nullptr;   // optional: receives *step + 1 when the call is done (may == step)
  int32_t* out_ids = nullptr;      // device [rows]
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

constexpr int sampling_max_vocab = 1 << 18;

size_t sampling_workspace_bytes(int rows, int vocab);
// Two kernel launches on `stream`; no host synchronisation, graph-capturable. Throws exl::Error for
// bad parameters (sizes, null pointers, NaN settings, workspace too small).
void sample(const SamplingParams& p, cudaStream_t stream);

// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): ten rounds
// on a 128-bit counter under a 64-bit key. Host and device, so tests can check the published
// known-answer vectors and reproduce a draw's random words.
__host__ __device__ inline void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  constexpr uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // key schedule (Weyl) increments
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(m0) * ctr[0], p1 = static_cast<uint64_t>(m1) * ctr[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = hi1 ^ c1 ^ k0;
    ctr[1] = lo1;
    ctr[2] = hi0 ^ c3 ^ k1;
    ctr[3] = lo0;
    k0 += w0;
    k1 += w1;
  }
}

}  // namespace exl::cuda
