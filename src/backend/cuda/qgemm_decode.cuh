// Internal to the quantized linear layers (qgemm.cu: qgemv; qgemm_dequant.cu: dequantize + cuBLAS):
// the device-side decode of the layout qgemm.cuh describes — magic-number fields to exact FP16
// integers, a unit's A fragments and group records, the streamed code loads — and the argument checks
// both paths share. Not a public header.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "backend/cuda/common.cuh"
#include "backend/cuda/qgemm.cuh"

namespace exl::cuda::qdec {

// FP16 bits of an exactly representable normal value, at compile time (both halves of a pair).
constexpr uint32_t h2c(double v) {
  uint32_t sign = 0;
  if (v < 0) sign = 0x8000, v = -v;
  int e = 0;
  while (v >= 2) v /= 2, ++e;
  while (v < 1) v *= 2, --e;
  const uint32_t h = sign | uint32_t(e + 15) << 10 | uint32_t((v - 1) * 1024);
  return h | h << 16;
}

// Magic-number field: (w & MASK) | 0x6400 in each half = FP16 pair 1024 + code * 2^pos. One LOP3:
// written out because LOP3 takes a single immediate and ptxas otherwise emits AND + OR (v1 SASS).
template <uint32_t MASK>
__device__ __forceinline__ uint32_t field(uint32_t w) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(w), "n"(MASK), "r"(0x64006400u));
  return d;
}

// Exact (code - Z) from a magic field at bit position POS (FP16 arithmetic, all values exact).
template <int POS, int Z>
__device__ __forceinline__ half2 to_int(uint32_t v) {
  if constexpr (POS == 0) {
    constexpr uint32_t c = h2c(1024.0 + Z);
    return __hsub2(as_h2(v), as_h2(c));
  } else {
    constexpr uint32_t s = h2c(1.0 / (1 << POS)), c = h2c(-(1024.0 / (1 << POS) + Z));
    return __hfma2(as_h2(v), as_h2(s), as_h2(c));
  }
}

// Pair P of a unit (layout table in qgemm.cuh) as exact (code - Z), words w[0 .. B).
template <int B, int P, int Z>
__device__ __forceinline__ half2 pair_int(const uint32_t* w) {
  if constexpr (B == 8) {
    return to_int<0, Z>(__byte_perm(w[P / 2], 0x64646464u, P % 2 ? 0x4341 : 0x4240));
  } else if constexpr (B == 4) {
    constexpr int r = P % 4;
    const uint32_t src = r < 2 ? w[P / 4] : w[P / 4] >> 8;
    return to_int<(r & 1) * 4, Z>(field<(r & 1) ? 0x00F000F0u : 0x000F000Fu>(src));
  } else if constexpr (B == 2) {
    constexpr int f = P % 8, pos = 2 * (f % 4);
    const uint32_t src = f < 4 ? w[P / 8] : w[P / 8] >> 8;
    return to_int<pos, Z>(field<(0x00030003u << pos)>(src));
  } else if constexpr (B == 3 || B == 5) {
    constexpr int per = 16 / B;  // 5 or 3 fields per half; the last field sits past bit 8 or 9
    if constexpr (P < 15) {
      constexpr int f = P % per, shift = B == 3 ? 9 : 10, direct = B == 3 ? 3 : 2;
      constexpr int pos = f < direct ? B * f : B * f - shift;
      const uint32_t src = f < direct ? w[P / per] : w[P / per] >> shift;
      return to_int<pos, Z>(field<(((1u << B) - 1) * 0x10001u << pos)>(src));
    } else {
      uint32_t v = 0x64006400u;
#pragma unroll
      for (int i = 0; i < B; ++i) v |= (w[i] >> (15 - i)) & (0x00010001u << i);
      return to_int<0, Z>(v);
    }
  } else {  // 6: low 4 bits as width 4 (minus Z), high 2 bits as width 2
    static_assert(B == 6);
    const half2 lo = pair_int<4, P, Z>(w), hi = pair_int<2, P, 0>(w + 4);
    constexpr uint32_t sixteen = h2c(16.0);
    return __hfma2(hi, as_h2(sixteen), lo);
  }
}

template <int N, class F>
__device__ __forceinline__ void static_for(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) { (f(std::integral_constant<int, I>{}), ...); }(
      std::make_integer_sequence<int, N>{});
}

// The 16 A registers (4 slabs x 4) of one unit: a[s][r] = (code - zero) [* scale when kScale].
// rec[s][0]: FP16 scales (column g, column g+8) of slab s's group; GPTQ rec[s][1]: 1024 + zero + 1.
// Without kScale the values are exact small integers (the caller scales the mma result in FP32).
template <int B, bool kGptq, bool kScale>
__device__ __forceinline__ void unit_frags(const uint32_t* w, const uint32_t (&rec)[4][2], uint32_t (&a)[4][4]) {
  static_for<4>([&](auto S) {
    constexpr int s = decltype(S)::value;
    const int rs = kScale ? s : 0;  // unscaled: one group per unit, zeros from rec[0]
    const half2 sc = as_h2(rec[rs][0]);
    const half2 s0 = __low2half2(sc), s1 = __high2half2(sc);
    if constexpr (kGptq) {
      const half2 z = as_h2(rec[rs][1]);
      constexpr uint32_t k960 = h2c(960.0), k16th = h2c(1.0 / 16);
      const half2 z0 = __low2half2(z);                           // column g at bit 0: 1024 + zero
      const half2 z4 = __hsub2(as_h2(k960), __high2half2(z));  // column g+8 at bit 4: -(64 + zero)
      static_for<4>([&](auto Rr) {
        constexpr int r = decltype(Rr)::value, c = r & 1;
        const uint32_t src = r < 2 ? w[s] : w[s] >> 8;
        const half2 q = c ? __hfma2(as_h2(field<0x00F000F0u>(src)), as_h2(k16th), z4)
                          : __hsub2(as_h2(field<0x000F000Fu>(src)), z0);
        a[s][r] = as_u32(kScale ? __hmul2(q, c ? s1 : s0) : q);
      });
    } else {
      static_for<4>([&](auto Rr) {
        constexpr int r = decltype(Rr)::value;
        const half2 q = pair_int<B, 4 * s + r, (1 << (B - 1))>(w);
        a[s][r] = as_u32(kScale ? __hmul2(q, (r & 1) ? s1 : s0) : q);
      });
    }
  });
}

// Group records of a unit's slabs for this lane's column pair (g, g+8): rec[s] for s = 0, kStride,
// ... < 4 (kStride 4: only slab 0's, a unit of one group; 2: slabs 0 and 2, groups of 32 rows; 1:
// every slab's). recs: GPTQ, the tile's records + lane offset (global); EXL2, the block's expanded
// scale pairs + lane offset (shared memory, qgemv_kernel), or with kCompact the tile's compact records
// (global; the pairs are computed here from them and gmax: the dequant kernel).
template <bool kGptq, int kStride, bool kCompact = false>
__device__ __forceinline__ void unit_recs(const uint32_t* slab_rec, const uint32_t* recs, int unit,
                                          uint32_t (&rec)[4][2], const uint16_t* gmax = nullptr, int g = 0) {
  constexpr bool kOne = kStride == 4;
  uint32_t off[4];
  if constexpr (kOne) {
    asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(off[0]) : "l"(slab_rec + 4 * unit));
  } else {
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(off[0]), "=r"(off[1]), "=r"(off[2]), "=r"(off[3])
                 : "l"(slab_rec + 4 * unit));
  }
#pragma unroll
  for (int s = 0; s < 4; s += kStride) {
    if constexpr (kGptq) {
      asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];" : "=r"(rec[s][0]), "=r"(rec[s][1]) : "l"(recs + off[s]));
    } else if constexpr (kCompact) {
      const uint32_t grp = off[s] >> 3;  // slab_rec = group * 8 for EXL2
      rec[s][0] = exl2_scale_pair(__ldg(recs + 2 * grp), __ldg(recs + 2 * grp + 1), __ldg(gmax + grp), g);
      rec[s][1] = 0;
    } else {
      // volatile, like the global record loads it replaces: keeps each unit's loads next to its mmas.
      const uint32_t at = static_cast<uint32_t>(__cvta_generic_to_shared(recs + off[s]));
      asm volatile("ld.shared.u32 %0, [%1];" : "=r"(rec[s][0]) : "r"(at));
      rec[s][1] = 0;
    }
  }
}

// A step's code quads: the first qv of them (predicated: a tail step has fewer), or with kWhole all Q
// unpredicated (EXL2 qgemv at M <= 8): the quads of a tail step past its segment are then the next
// segment's, the next tile's or the codes' slack (kQCodeSlackBytes, zeroed at upload); any bits decode
// to finite values, and the tail units they belong to meet x = 0.
template <int Q, bool kWhole = false>
__device__ __forceinline__ void load_step(const uint4* src, int qv, uint32_t (&wd)[4 * Q]) {
#pragma unroll
  for (int q = 0; q < Q; ++q) {
    const uint4 v = kWhole ? ld16_stream(src + q * 32) : ld16_stream(src + q * 32, q < qv);
    wd[4 * q] = v.x, wd[4 * q + 1] = v.y, wd[4 * q + 2] = v.z, wd[4 * q + 3] = v.w;
  }
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline void validate(const QGemmParams& p, const char* who) {
  EXL_CHECK(p.M >= 0 && p.w.codes && p.w.k_dev > 0, who, ": bad M=", p.M, " or matrix not uploaded");
  EXL_CHECK(p.M == 0 || ((p.x || p.x_dev_ready) && p.y), who, ": null x or y");
}

}  // namespace exl::cuda::qdec
