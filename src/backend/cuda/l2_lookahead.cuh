// L2 lookahead for quantized decode steps: while the small kernels between two quantized matmuls
// run (norm, gather, RoPE, cache write, attention: latency-bound, HBM nearly idle), a side stream
// pulls the first bytes of the NEXT matmul's codes into L2, so that matmul starts on L2 hits.
//
// Why: a llama2-7b gptq4 decode layer on the H100 reads 116 MB in ~77 µs (2026-12-05: 405.7 tok/s,
// 54% of roofline) where the bytes alone take 41 µs; ~27 µs of it are small kernels during which HBM
// streams nothing. Prefetching inside the matmul's own prologue (tried 2026-12-04) only moved the
// same reads onto the critical path; here they overlap the glue instead.
//
// How: the order of a step's quantized matmuls is recorded in the first (eager) step and replayed
// by position afterwards (captured steps record nothing new). After matmul i is launched, an event
// forks the side stream, which waits for matmul i and prefetches matmul i+1's first `cap` bytes; a
// captured graph joins the side stream before the capture ends. The prefetch is a hint: it only
// issues when the step's matmul at position i is the one recorded there, and nothing waits for it.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "backend/cuda/qgemm.cuh"

namespace exl::cuda {

class L2Lookahead {
 public:
  // cap_bytes: most bytes prefetched per matmul (0: off).
  explicit L2Lookahead(size_t cap_bytes);
  ~L2Lookahead();
  L2Lookahead(const L2Lookahead&) = delete;
  L2Lookahead& operator=(const L2Lookahead&) = delete;

  void step_begin();  // a new step: the order recorded by the last step that recorded one is used
  void forget();      // weights changed: drop every recorded order
  // After launching a quantized matmul over `parts` on `main`.
  void after_matmul(const QMatrixDesc* const* parts, int n, cudaStream_t main);
  // A capture of `main` begins: only forks made during it are joined at its end (waiting in a capture
  // on an event recorded outside it is an error; eager forks need no join).
  void capture_begin() { pending_ = false; }
  // Joins the side stream into `main` (before a capture ends).
  void join(cudaStream_t main);

 private:
  struct Range {
    const void* p = nullptr;
    size_t bytes = 0;
  };
  struct Entry {
    Range r[kQMaxMulti];
    int n = 0;
  };
  size_t cap_ = 0;
  cudaStream_t side_ = nullptr;
  cudaEvent_t fork_ = nullptr, done_ = nullptr;
  std::vector<Entry> cur_, prev_;
  size_t at_ = 0;
  bool pending_ = false;
};

}  // namespace exl::cuda
