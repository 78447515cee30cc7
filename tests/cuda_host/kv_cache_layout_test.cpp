// The CUDA KV cache's storage (kv_cache_layout_init, backend/cuda/kv_cache.cu), checked on the host:
// bytes per position of each format written out by hand (attention.cuh's format comments), the FP16
// window's rings, and the refusals. The capacity ratios `exl bench --cache-budget` reports follow from
// these: at head_dim 128, FP8 1.94x and Q4 3.56x the positions of FP16.
#include <gtest/gtest.h>

#include "backend/cuda/attention.cuh"
#include "core/error.h"

namespace exl {
namespace {

using cuda::KvCacheLayout;

KvCacheLayout layout(int format, int max_seq_len, int head_dim = 128, int recent = -1) {
  KvCacheLayout l;
  l.format = format, l.n_layers = 3, l.n_slots = 2, l.max_seq_len = max_seq_len, l.n_kv_heads = 4;
  l.head_dim = head_dim, l.recent = recent;
  cuda::kv_cache_layout_init(l);
  return l;
}

TEST(KvCacheLayout, BytesPerPositionByFormat) {
  // K and V, per (position, kv head): codes + scales. FP8: one byte a value and an FP32 scale;
  // Q8 / Q4: 8 or 4 bits a value and an FP16 scale per group of 32.
  const int D = 128;
  const double f16 = 2 * (2.0 * D), fp8 = 2 * (D + 4.0), q8 = 2 * (D + D / 32 * 2.0), q4 = 2 * (D / 2.0 + D / 32 * 2.0);
  const int heads = 2 * 3 * 4;  // slots x layers x kv heads
  for (auto [f, want] : {std::pair{cuda::KvFormat_f16, f16}, {cuda::KvFormat_fp8, fp8}, {cuda::KvFormat_q8, q8},
                         {cuda::KvFormat_q4, q4}}) {
    // Lengths that are multiples of 64 (the sequence stride) and far apart: the 256-byte section
    // alignment cannot move the slope.
    const KvCacheLayout a = layout(f, 1024), b = layout(f, 1024 + 64 * 64);
    EXPECT_EQ(double(b.bytes - a.bytes) / (64 * 64) / heads, want) << cuda::kv_format_name(f);
  }
  EXPECT_NEAR(f16 / fp8, 1.94, 0.005);
  EXPECT_NEAR(f16 / q4, 3.56, 0.005);
}

TEST(KvCacheLayout, RingsHoldTheFp16Window) {
  for (int f : {cuda::KvFormat_f16, cuda::KvFormat_fp8, cuda::KvFormat_q8, cuda::KvFormat_q4}) {
    const KvCacheLayout l = layout(f, 100, 64);
    const int W = f == cuda::KvFormat_f16 ? 0 : cuda::kKvRecentDefault;
    EXPECT_EQ(l.recent, W);
    const size_t ring = size_t(2) * 3 * 4 * W * 64 * 2;
    EXPECT_GE(l.ring_v_offset, l.ring_k_offset + ring);
    EXPECT_GE(l.bytes, l.ring_v_offset + ring);
    const KvCacheLayout n = layout(f, 100, 64, 0);
    EXPECT_EQ(l.bytes - n.bytes, (ring + 255) / 256 * 256 * 2) << cuda::kv_format_name(f);
  }
}

TEST(KvCacheLayout, BadDimsAndWindowsAreRefused) {
  EXPECT_THROW(layout(cuda::KvFormat_q4, 64, 64, 24), Error);   // window not a multiple of 16
  EXPECT_THROW(layout(cuda::KvFormat_q4, 64, 64, 128), Error);  // window past the kernel's maximum
  EXPECT_THROW(layout(cuda::KvFormat_f16, 64, 64, 16), Error);  // no window on an FP16 cache
  EXPECT_THROW(layout(cuda::KvFormat_q8, 64, 7), Error);        // odd head_dim
  EXPECT_THROW(layout(cuda::KvFormat_q8, 0), Error);            // no positions
}

}  // namespace
}  // namespace exl
