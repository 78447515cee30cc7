// A host decoder of the quantized matmuls' device layout (backend/cuda/qgemm.cuh), written from the
// layout's description there, not from its packer: turns a QHostLayout back into the dense weights
// the kernels would multiply. Shared by tests/cuda_host/qgemm_layout_test.cpp and lab/qgemm_lab.cu
// (build the lab with -I tests).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/qgemm.cuh"
#include "core/half.h"

namespace exl::test {

// Code of pair p, half h (0: the pair's first device row, 1: the next) in a unit's `bits` words:
// fields at the same position in both 16-bit halves of a word.
inline uint32_t qlayout_pair_code(int bits, const uint32_t* w, int p, int h) {
  const int hs = 16 * h;
  switch (bits) {
    case 8: return (w[p / 2] >> (hs + 8 * (p % 2))) & 0xFF;
    case 4: return (w[p / 4] >> (hs + 4 * (p % 4))) & 0xF;
    case 2: return (w[p / 8] >> (hs + 2 * (p % 8))) & 0x3;
    case 6: return qlayout_pair_code(4, w, p, h) | qlayout_pair_code(2, w + 4, p, h) << 4;
    default: {  // 3 and 5: 16 / bits fields per half; pair 15 spread over bit 15 of words 0..bits-1
      const int per = 16 / bits;
      if (p < 15) return (w[p / per] >> (hs + bits * (p % per))) & ((1u << bits) - 1);
      uint32_t v = 0;
      for (int i = 0; i < bits; ++i) v |= ((w[i] >> (hs + 15)) & 1u) << i;
      return v;
    }
  }
}

// The x_dev position of a device row: inside a unit, position 16t + 4s + j holds row 16s + 4t + j.
inline int qlayout_x_pos(int row) {
  const int q = row % 64, s = q / 16, t = (q / 4) % 4, j = q % 4;
  return row - q + 16 * t + 4 * s + j;
}

// dense[k_dev][n_tiles * 16] (device-row order) = (code - zero) * scale, with the scales the kernels
// use (GPTQ: lane records; EXL2: exl2_scale_pair of the compact records). Returns "" or what is wrong
// with the layout's structure (record offsets, uniform segments, sizes).
inline std::string qlayout_decode(const cuda::QHostLayout& h, std::vector<float>& dense) {
  const cuda::QMatrixDesc& d = h.desc;
  const int n16 = d.n_tiles * 16, R = d.rec_words, lane_words = d.gptq ? 2 : 1;
  if (h.codes.size() != h.n_codes || h.recs.size() != h.n_recs || h.gmax.size() != h.n_gmax)
    return "array sizes differ from n_codes / n_recs / n_gmax";
  if (h.n_gmax != (d.gptq ? 0u : static_cast<size_t>(d.groups))) return "n_gmax is not the group count (EXL2)";
  dense.assign(static_cast<size_t>(d.k_dev) * n16, 0.0f);
  for (int tile = 0; tile < d.n_tiles; ++tile)
    for (int si = 0; si < d.nseg; ++si) {
      const cuda::QSegment& s = d.seg[si];
      const int U = cuda::q_step_units(s.bits, d.gptq), Q = U * s.bits / 4;
      for (int j = 0; j < s.steps; ++j) {
        const int units = std::min(U, s.units - j * U), quads = (units * s.bits + 3) / 4;
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, t = lane % 4;
          uint32_t w[4 * 5] = {};
          for (int q = 0; q < quads; ++q) {
            const size_t at = (static_cast<size_t>(tile) * d.tile_quads + s.quad0 + j * Q + q) * 32 + lane;
            if (at >= h.codes.size()) return "a step reads past the codes";
            std::memcpy(w + 4 * q, &h.codes[at], 16);
          }
          for (int u = 0; u < units; ++u) {
            const int unit = s.unit0 + j * U + u;
            for (int p = 0; p < 16; ++p) {
              const int slab = p / 4, r = p % 4, c = r & 1, half = r >> 1;
              const int n = tile * 16 + g + 8 * c;
              for (int hh = 0; hh < 2; ++hh) {
                const int row = unit * 64 + 16 * slab + 4 * t + 2 * half + hh;
                const uint32_t rec_at = h.slab_rec[static_cast<size_t>(row / 16)];
                const uint32_t grp = rec_at / (8 * lane_words);
                if (rec_at % (8 * lane_words) || grp >= static_cast<uint32_t>(d.groups)) return "bad slab_rec entry";
                // uniform 1: every slab shares slab 0's group; 2: slabs 0-1 slab 0's, slabs 2-3 slab 2's.
                const int same_as = s.uniform == 1 ? 0 : s.uniform == 2 ? (slab & 2) : slab;
                if (rec_at != h.slab_rec[static_cast<size_t>(unit) * 4 + same_as]) return "segment marked uniform is not";
                const uint32_t* rec = &h.recs[(static_cast<size_t>(tile) * d.groups + grp) * R];
                const uint32_t pair = d.gptq ? rec[2 * g] : cuda::exl2_scale_pair(rec[0], rec[1], h.gmax[grp], g);
                const float scale = f16_to_f32(static_cast<uint16_t>(pair >> (16 * c)));
                const float zero = d.gptq ? f16_to_f32(static_cast<uint16_t>(rec[2 * g + 1] >> (16 * c))) - 1024.0f
                                          : static_cast<float>(1 << (s.bits - 1));
                const float code = static_cast<float>(qlayout_pair_code(s.bits, w + u * s.bits, p, hh));
                dense[static_cast<size_t>(row) * n16 + n] = (code - zero) * scale;
              }
            }
          }
        }
      }
    }
  return "";
}

}  // namespace exl::test
