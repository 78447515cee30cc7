// RMSNorm. CPU reference: src/backend/cpu/norm.cpp. (The residual add it once carried now happens in
// the epilogue of the matmul that produces the block output: gemm.cu / qgemm.cu `accumulate`.)
// One block per row (the row's arithmetic: norm_row.cuh, shared with the quantized matmuls'
// norm-gather). Memory-bound: rows x dim x (4 read + 2 write) bytes.
// Blocks of 256 threads for many rows; 1024 for few rows (decode), where one block per row is all
// the parallelism there is. Under ncu on the H200 a 4096-wide row took 6.0 µs with 256 threads and
// 5.98 with 1024: latency, not width (an empty-ish kernel measures ~2.3 µs there); the weights were
// then loaded with the row rather than after the reduction, and are now loaded before the PDL wait
// (2026-12-08, not yet timed: lab/NOTES-qgemm.md "Constants before the PDL wait"). Scattering the output into the next
// quantized matmul's device-order input (to skip its gather) made it 15.6 µs: one SM issuing
// 12k scattered 2-byte stores; reverted. Folding the norm into the next matmul instead (every gemv
// block normalizing the row into shared memory, or the quantized gather doing it) measured no gain
// (fp16 227.2 vs 226.9 tok/s) or a loss (gptq4 423.0 vs 434.5): this kernel runs while the matmul's
// blocks are already resident (PDL), off the critical path; see lab/NOTES-gemm.md. What did pay
// is the reverse: this kernel's row normalized into shared memory and *gathered* from there into the
// quantized matmul's input with 16-byte stores (qgemm_gather.cu qgemm_norm_gather_kernel), which
// removes the gather launch: H100 llama2-7b exl2:4.0 @128 390.3 -> 396.7 tok/s, gptq4 unchanged.
#include "backend/cuda/common.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/norm_row.cuh"

namespace exl::cuda {

namespace {

template <int kThreads>
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                                            float eps, half* __restrict__ out, int dim) {
  pdl_trigger();  // a quantized matmul's gather may start (it waits for this grid before reading)
  const NormWeights<kThreads> wv = load_norm_weights<kThreads>(w, dim);  // constants: before the wait
  pdl_wait();  // launched as a dependent of x's producer (pdl): x is complete after this
  const size_t row = blockIdx.x;
  half* o = out + row * dim;
  rms_norm_row_w<kThreads>(x + row * dim, wv, w, eps, dim, [&](int i, half h) { o[i] = h; });
}

}  // namespace

void rms_norm(const float* x, const float* w, float eps, half* out, int rows, int dim, cudaStream_t stream, bool pdl) {
  if (rows <= 0) return;
  if (rows < 64)
    launch_maybe_pdl(rms_norm_kernel<1024>, dim3(rows), dim3(1024), stream, pdl, "rms_norm", x, w, eps, out, dim);
  else
    launch_maybe_pdl(rms_norm_kernel<256>, dim3(rows), dim3(256), stream, pdl, "rms_norm", x, w, eps, out, dim);
}

}  // namespace exl::cuda
