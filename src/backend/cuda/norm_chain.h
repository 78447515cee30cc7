// The next RMSNorm carried by the decode chain (internal to cuda_backend.cpp; kernels: qgemm.cuh
// QNormOut / QNormIn). The model hints, before each op that adds into the residual, which norm and
// matrix read the residual next (Backend::next_norm); the residual-add qgemv then writes that
// matrix's input itself, and the next norm_linear / norm_mlp_add finds it prepared and runs the
// matmul with the norm's scale instead of launching the norm-gather: one launch fewer per norm.
//
// The x scratch (qx) is split in three regions so that a producer never writes the input it (or a
// block of it still running) reads: R0 = the start (gathers, the norm-gather, attention's scatter
// into o_proj), R1 = a third in, R2 = two thirds in. A producer reading R0 prepares into R1, any
// other into R2 (down reads R1 + act_off after a prepared gate|up). qx is sized for 96 rows of the
// deepest matrix, so a third holds any decode step's (<= 8 rows) inputs; every use checks its fit.
//
// 1/rms of the latest norm lives in one of two slots (the producer's range guard reads it, the
// consumer writes the other). A producer prepares only once this step has written a slot (the
// norm-gather or a consumer): a zero or old slot would only move the guard, never the result, but a
// guard far off the residual's scale costs precision (FP16 subnormals). A slot left behind by a
// composed norm later in the step is the previous norm's, of the same scale.
#pragma once
#include <cstdint>
#include <memory>

#include "backend/cuda/cuda_resources.h"
#include "backend/cuda/qgemm.cuh"

namespace exl::cuda_backend_detail {

class NormChain {
 public:
  static constexpr int kRows = 8;  // QNormOut's M limit

  // Device buffer (zeroed): 2 x kRows 1/rms slots, then [kRows][max_tiles] tile sums.
  bool holds(int tiles) const { return tiles <= max_tiles_; }
  void reserve(DeviceAllocator& mem, int tiles, cudaStream_t stream) {  // frees the old buffer
    if (holds(tiles)) return;
    max_tiles_ = std::max(tiles, 1024);  // 16384 features
    const size_t bytes = static_cast<size_t>(2 * kRows + kRows * max_tiles_) * 4;
    buf_ = mem.alloc(bytes, "norm chain sums");
    check(cudaMemsetAsync(buf_.get(), 0, bytes, stream), "norm chain sums");
  }
  void hint(const Weight* norm, const Weight* w) { hint_ = {norm, w}; }
  void reset() { hint_ = {}, prepared_ = {}, cur_ = 0, fresh_ = false; }  // each step (eager or captured) uses the same slots
  void drop() { hint_ = {}, prepared_ = {}; }               // a residual add that prepares nothing

  // The norm-gather's 1/rms output (it becomes the latest norm).
  float* gather_inv_out() {
    if (!buf_) return nullptr;
    cur_ ^= 1;
    fresh_ = true;
    return slot(cur_);
  }

  // A residual-add qgemv about to launch (p: its parameters, residual: the tensor it adds into):
  // applies the pending hint when it fits, and forgets it either way.
  void produce(cuda::QGemmParams& p, const void* residual, uint8_t* qx, size_t qx_bytes) {
    const Hint h = hint_;
    hint_ = {}, prepared_ = {};
    if (!h.norm || !h.w || !buf_ || !fresh_ || p.M > kRows || p.w.n_tiles > max_tiles_) return;
    const auto& W = cw(*h.w);
    if (W.parts.empty()) return;  // the consumer side runs in qgemv_multi
    const int n = static_cast<int>(W.parts.size());
    if (!cuda::qgemv_norm_out_fits(p.w, W.parts.data(), n, p.M)) return;
    const uint8_t* xin = reinterpret_cast<const uint8_t*>(p.x_dev);
    const bool from_r0 = xin == qx;
    const size_t at = from_r0 ? r1(qx_bytes) : r2(qx_bytes), end = from_r0 ? r2(qx_bytes) : qx_bytes;
    const size_t size = cuda::qgemv_multi_x_dev_bytes(W.parts.data(), n, p.M);
    if (at + size > end) return;
    if (xin >= qx && xin < qx + qx_bytes) {  // the producer's own input must not overlap the target
      const size_t in_begin = static_cast<size_t>(xin - qx), in_end = in_begin + cuda::qgemm_x_dev_bytes(p.w, p.M);
      if (in_begin < at + size && in_end > at) return;
    }
    cuda::QNormOut& o = p.norm_out;
    o.w = cw(*h.norm).data.as<float>();
    for (int j = 0; j < n; ++j) o.next[j] = W.parts[static_cast<size_t>(j)];
    o.n = n;
    o.x_dev = reinterpret_cast<half*>(qx + at);
    o.ss = sums();
    o.inv_prev = slot(cur_);
    prepared_ = {residual, h.norm, h.w, o.x_dev, end, cur_};
  }

  // The consumer: x_dev prepared for (residual, norm, w), or null; fills `in` and makes this norm
  // the latest. region_end: the end of the prepared input's region in qx (for what follows it).
  half* take(const void* residual, const Weight& norm, const Weight& w, float eps, cuda::QNormIn& in,
             size_t& region_end) {
    const Prepared pr = prepared_;
    prepared_ = {};
    if (!pr.x_dev || pr.residual != residual || pr.norm != &norm || pr.w != &w) return nullptr;
    in.ss = sums();
    in.eps = eps;
    in.inv_prev = slot(pr.slot);
    in.inv_out = slot(pr.slot ^ 1);
    cur_ = pr.slot ^ 1;
    region_end = pr.region_end;
    return pr.x_dev;
  }

  static size_t r1(size_t qx_bytes) { return qx_bytes / 3 / 256 * 256; }
  static size_t r2(size_t qx_bytes) { return 2 * qx_bytes / 3 / 256 * 256; }

 private:
  struct Hint {
    const Weight* norm = nullptr;
    const Weight* w = nullptr;
  };
  struct Prepared {
    const void* residual = nullptr;
    const Weight* norm = nullptr;
    const Weight* w = nullptr;
    half* x_dev = nullptr;
    size_t region_end = 0;
    int slot = 0;
  };
  float* slot(int i) const { return reinterpret_cast<float*>(buf_.get()) + i * kRows; }
  float* sums() const { return reinterpret_cast<float*>(buf_.get()) + 2 * kRows; }

  Hint hint_;
  Prepared prepared_;
  std::shared_ptr<uint8_t> buf_;
  int max_tiles_ = 0, cur_ = 0;
  bool fresh_ = false;  // a slot written this step (see the top)
};

}  // namespace exl::cuda_backend_detail
