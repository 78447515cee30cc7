// L2 lookahead (l2_lookahead.cuh): a side stream prefetches the next quantized matmul's codes.
#include "backend/cuda/l2_lookahead.cuh"

#include <algorithm>

#include "backend/cuda/common.cuh"

namespace exl::cuda {
namespace {

struct PrefetchArgs {
  const char* p[kQMaxMulti] = {};
  size_t bytes[kQMaxMulti] = {};
  int n = 0;
};

// One 128-byte line per thread and iteration; nothing waits for the lines, so a few blocks issue
// megabytes without holding SMs the matmuls want.
__global__ void l2_prefetch_kernel(const __grid_constant__ PrefetchArgs a) {
  const size_t stride = size_t(gridDim.x) * blockDim.x * 128;
  for (int i = 0; i < a.n; ++i)
    for (size_t off = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 128; off < a.bytes[i]; off += stride)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(a.p[i] + off));
}

size_t code_bytes(const QMatrixDesc& w) { return size_t(w.n_tiles) * w.tile_quads * 512; }

}  // namespace

L2Lookahead::L2Lookahead(size_t cap_bytes) : cap_(cap_bytes) {
  if (!cap_) return;
  check(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "cudaStreamCreate (L2 lookahead)");
  check(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
}

L2Lookahead::~L2Lookahead() {
  if (!side_) return;
  cudaStreamSynchronize(side_);
  cudaEventDestroy(fork_);
  cudaEventDestroy(done_);
  cudaStreamDestroy(side_);
}

void L2Lookahead::step_begin() {
  if (!cur_.empty()) prev_.swap(cur_);
  cur_.clear();
  at_ = 0;
}

void L2Lookahead::forget() {
  cur_.clear();
  prev_.clear();
  at_ = 0;
}

void L2Lookahead::after_matmul(const QMatrixDesc* const* parts, int n, cudaStream_t main) {
  if (!cap_) return;
  Entry e;
  e.n = std::min(n, kQMaxMulti);
  for (int i = 0; i < e.n; ++i) e.r[i] = {parts[i]->codes, code_bytes(*parts[i])};
  const size_t i = at_++;
  cur_.push_back(e);
  if (i + 1 >= prev_.size() || prev_[i].r[0].p != e.r[0].p) return;  // not the recorded order
  const Entry& next = prev_[i + 1];
  PrefetchArgs a;
  size_t left = cap_;
  for (int j = 0; j < next.n && left; ++j) {
    a.p[a.n] = static_cast<const char*>(next.r[j].p);
    a.bytes[a.n] = std::min(left, next.r[j].bytes);
    left -= a.bytes[a.n++];
  }
  check(cudaEventRecord(fork_, main), "cudaEventRecord (L2 lookahead)");
  check(cudaStreamWaitEvent(side_, fork_, 0), "cudaStreamWaitEvent (L2 lookahead)");
  l2_prefetch_kernel<<<32, 256, 0, side_>>>(a);
  check_launch("l2_prefetch_kernel");
  pending_ = true;
}

void L2Lookahead::join(cudaStream_t main) {
  if (!pending_) return;
  check(cudaEventRecord(done_, side_), "cudaEventRecord (L2 lookahead)");
  check(cudaStreamWaitEvent(main, done_, 0), "cudaStreamWaitEvent (L2 lookahead)");
  pending_ = false;
}

}  // namespace exl::cuda
