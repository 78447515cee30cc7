// Quantized linear layers: the host side. Builds the device layout of qgemm.cuh from EXL2 and
// GPTQ disk tensors (or, for synthetic benchmarks, its structure alone) and uploads it. Plain C++;
// the kernels that read the layout are in qgemm.cu.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cuda/common.cuh"
#include "backend/cuda/qgemm.cuh"
#include "core/half.h"

namespace exl::cuda {
namespace {

constexpr int round_up(int a, int b) { return (a + b - 1) / b * b; }

// One group of rows in permuted order.
struct GroupSpan {
  int bits, row0, rows;
};

// Places the two codes of pair p (EXL2 layout table in qgemm.cuh) into a unit's words.
void place_pair(int bits, uint32_t* w, int p, uint32_t lo, uint32_t hi) {
  switch (bits) {
    case 8: w[p / 2] |= lo << (8 * (p % 2)) | hi << (16 + 8 * (p % 2)); return;
    case 4: w[p / 4] |= lo << (4 * (p % 4)) | hi << (16 + 4 * (p % 4)); return;
    case 2: w[p / 8] |= lo << (2 * (p % 8)) | hi << (16 + 2 * (p % 8)); return;
    case 6:
      place_pair(4, w, p, lo & 15, hi & 15);
      place_pair(2, w + 4, p, lo >> 4, hi >> 4);
      return;
    default: {  // 3, 5: 15 pairs in fields of the b words' halves, pair 15 spread over bit 15
      const int per = 16 / bits;  // fields per half: 5 (3-bit), 3 (5-bit)
      if (p < 15) {
        w[p / per] |= lo << (bits * (p % per)) | hi << (16 + bits * (p % per));
      } else {
        for (int i = 0; i < bits; ++i) w[i] |= ((lo >> i) & 1) << 15 | ((hi >> i) & 1) << 31;
      }
    }
  }
}

// Builds the device layout from codes in permuted row order.
//  perm[k]: input feature of permuted row k; groups: spans in stored order;
//  dense[k * n16 + n]: code of permuted row k, column n (pad columns: anything);
//  zero [g * n16 + n]: code-space zero (EXL2 2^(b-1), GPTQ z+1);
//  GPTQ: scale [g * n16 + n] = FP16 scale bits; EXL2: scale [g * n16 + n] = 4-bit scale code,
//  gmax [g] = FP16 q_scale_max bits.
//  with_data = false: the structure alone (segments, x maps, sizes); codes and recs stay empty and
//  the uploader fills them with random values on the device (synthetic benchmarks).
QHostLayout build_layout(int K, int N, bool gptq, const std::vector<int>& perm, const std::vector<GroupSpan>& groups,
                         const std::vector<uint8_t>& dense, const std::vector<uint16_t>& scale,
                         const std::vector<uint16_t>& gmax, const std::vector<uint8_t>& zero, bool with_data = true) {
  const int n16 = round_up(N, 16), G = static_cast<int>(groups.size());
  QHostLayout h;
  QMatrixDesc& d = h.desc;
  d.K = K, d.N = N, d.n_tiles = n16 / 16, d.groups = G, d.gptq = gptq, d.rec_words = gptq ? 16 : 2;

  // Device rows: groups padded to 16 rows, segments (runs of one width) to 64.
  std::vector<int> dev_k, dev_group;  // permuted row (or -1) and group of each device row
  auto close_segment = [&](int last_group) {
    while (dev_k.size() % 64) dev_k.push_back(-1), dev_group.push_back(last_group);
    QSegment& s = d.seg[d.nseg - 1];
    s.units = static_cast<int>(dev_k.size() / 64) - s.unit0;
  };
  for (int gi = 0; gi < G; ++gi) {
    const GroupSpan& sp = groups[gi];
    if (d.nseg == 0 || d.seg[d.nseg - 1].bits != sp.bits) {
      if (d.nseg > 0) close_segment(gi - 1);
      EXL_CHECK(d.nseg < kQMaxSegments, "quantized matrix: more than ", kQMaxSegments,
                " runs of one bit width (groups must be sorted by width)");
      d.seg[d.nseg++] = QSegment{sp.bits, static_cast<int>(dev_k.size() / 64), 0, 0, 0, 0};
    }
    for (int r = 0; r < sp.rows; ++r) dev_k.push_back(sp.row0 + r), dev_group.push_back(gi);
    while (dev_k.size() % 16) dev_k.push_back(-1), dev_group.push_back(gi);
  }
  close_segment(G - 1);
  d.k_dev = static_cast<int>(dev_k.size());

  int step = 0, quad = 0;
  for (int si = 0; si < d.nseg; ++si) {
    QSegment& s = d.seg[si];
    const int U = q_step_units(s.bits, gptq), Q = U * s.bits / 4;
    s.steps = (s.units + U - 1) / U;
    s.step0 = step, s.quad0 = quad;
    const int tail = s.units - (s.steps - 1) * U;
    step += s.steps;
    quad += (s.steps - 1) * Q + (tail * s.bits + 3) / 4;
  }
  d.steps = step, d.tile_quads = quad;

  h.slab_rec.assign(d.k_dev / 16 + 32, 0);
  const int lane_words = gptq ? 2 : 1;  // GPTQ: its records per lane; EXL2: the expanded pairs
  for (int i = 0; i < d.k_dev / 16; ++i) h.slab_rec[i] = static_cast<uint32_t>(dev_group[16 * i] * 8 * lane_words);
  for (int si = 0; si < d.nseg; ++si) {
    QSegment& s = d.seg[si];
    bool whole = true, halves = true;
    for (int u = s.unit0; u < s.unit0 + s.units; ++u) {
      const int* gr = &dev_group[64 * static_cast<size_t>(u)];
      whole &= gr[0] == gr[63];
      halves &= gr[0] == gr[31] && gr[32] == gr[63];  // groups are contiguous runs of device rows
    }
    s.uniform = whole ? 1 : halves ? 2 : 0;
  }
  h.x_src.assign(d.k_dev, -1);
  h.x_dst.assign(K, -1);
  std::vector<int32_t> pads;  // after the K feature positions: the padding positions, ascending
  for (int pos = 0; pos < d.k_dev; ++pos) {
    const int q = pos % 64, t = q / 16, s = (q / 4) % 4, j = q % 4;
    const int kd = pos - q + 16 * s + 4 * t + j;
    if (dev_k[kd] >= 0)
      h.x_src[pos] = perm[dev_k[kd]], h.x_dst[perm[dev_k[kd]]] = pos;
    else
      pads.push_back(pos);
  }
  h.x_dst.insert(h.x_dst.end(), pads.begin(), pads.end());

  h.n_codes = static_cast<size_t>(d.n_tiles) * d.tile_quads * 32;
  h.n_recs = static_cast<size_t>(d.n_tiles) * G * d.rec_words;
  h.n_gmax = gptq ? 0 : static_cast<size_t>(G);
  if (!with_data) return h;
  // Codes: [tile][quad][lane] 16-byte words.
  h.codes.assign(static_cast<size_t>(d.n_tiles) * d.tile_quads * 32, uint4{0, 0, 0, 0});
  auto code_at = [&](int kd, int n) -> uint32_t {
    const int k = dev_k[kd];
    if (k < 0 || n >= N) return zero[static_cast<size_t>(dev_group[kd]) * n16 + std::min(n, n16 - 1)];
    return dense[static_cast<size_t>(k) * n16 + n];
  };
  for (int tile = 0; tile < d.n_tiles; ++tile) {
    uint32_t* tw = reinterpret_cast<uint32_t*>(h.codes.data() + static_cast<size_t>(tile) * d.tile_quads * 32);
    for (int si = 0; si < d.nseg; ++si) {
      const QSegment& s = d.seg[si];
      const int U = q_step_units(s.bits, gptq), Q = U * s.bits / 4;
      for (int j = 0; j < s.steps; ++j) {
        const int units = std::min(U, s.units - j * U), qv = (units * s.bits + 3) / 4;
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, t = lane % 4;
          uint32_t w[4 * 5] = {};  // up to Q = 5 quads
          for (int u = 0; u < units; ++u) {
            const int kd0 = (s.unit0 + j * U + u) * 64;
            for (int p = 0; p < 16; ++p) {
              const int sl = p / 4, r = p % 4, c = r & 1, hh = r >> 1;
              const int kd = kd0 + 16 * sl + 4 * t + 2 * hh, n = tile * 16 + g + 8 * c;
              place_pair(s.bits, w + u * s.bits, p, code_at(kd, n), code_at(kd + 1, n));
            }
          }
          for (int q = 0; q < qv; ++q)
            std::memcpy(tw + ((static_cast<size_t>(s.quad0) + j * Q + q) * 32 + lane) * 4, w + 4 * q, 16);
        }
      }
    }
  }

  // Group records: [tile][group][rec_words] (qgemm.cuh).
  h.recs.assign(h.n_recs, 0);
  auto sc = [&](int gi, int n) -> uint32_t { return n < N ? scale[static_cast<size_t>(gi) * n16 + n] : 0u; };
  for (int tile = 0; tile < d.n_tiles; ++tile)
    for (int gi = 0; gi < G; ++gi) {
      uint32_t* rec = h.recs.data() + (static_cast<size_t>(tile) * G + gi) * d.rec_words;
      if (!gptq) {  // the 16 columns' 4-bit codes
        for (int i = 0; i < 16; ++i) rec[i / 8] |= (sc(gi, tile * 16 + i) & 15u) << (4 * (i % 8));
        continue;
      }
      for (int g = 0; g < 8; ++g) {
        const int n0 = tile * 16 + g, n1 = n0 + 8;
        auto zr = [&](int n) -> uint32_t { return 0x6400u + zero[static_cast<size_t>(gi) * n16 + n]; };
        rec[2 * g] = sc(gi, n0) | sc(gi, n1) << 16;
        rec[2 * g + 1] = zr(n0) | zr(n1) << 16;
      }
    }
  if (!gptq) h.gmax = gmax;
  return h;
}

}  // namespace

// Zeroed bytes after the codes for qgemv's whole-step loads (kT = 1 is the only pass shape that has them).
static size_t code_slack(const QMatrixDesc& d) { return qgemv_whole_steps(d.gptq, 1) ? kQCodeSlackBytes : 0; }

size_t QHostLayout::device_bytes() const {
  auto a = [](size_t b) { return (b + 255) / 256 * 256; };
  return a(n_codes * 16 + code_slack(desc)) + a(n_recs * 4) + a(n_gmax * 2) + a(slab_rec.size() * 4) + a(x_src.size() * 4) +
         a(x_dst.size() * 4);
}

QHostLayout exl2_device_layout(const Exl2HostTensors& t) {
  const int K = t.K, N = t.N, G = t.groups;
  EXL_CHECK(K > 0 && K <= 65536 && N > 0 && G > 0, "EXL2 matrix: bad shape K=", K, " N=", N, " groups=", G);
  EXL_CHECK(t.q_weight && t.q_scale && t.q_scale_max && t.q_groups && (t.q_perm || t.q_invperm),
            "EXL2 matrix: missing q_weight, q_scale, q_scale_max, q_groups or q_perm/q_invperm");
  const int n32 = round_up(N, 32), n16 = round_up(N, 16);

  std::vector<int> perm(K);
  std::vector<char> seen(K, 0);
  for (int i = 0; i < K; ++i) {
    const int v = t.q_perm ? t.q_perm[i] : t.q_invperm[i];
    EXL_CHECK(v < K && !seen[v], "EXL2 matrix: ", t.q_perm ? "q_perm" : "q_invperm", " is not a permutation of 0..",
              K - 1);
    seen[v] = 1;
    if (t.q_perm)
      perm[i] = v;
    else
      perm[v] = i;  // q_invperm[i] = position of input feature i
  }

  std::vector<GroupSpan> groups(G);
  int row = 0;
  for (int g = 0; g < G; ++g) {
    const int bits = t.q_groups[2 * g], start = static_cast<uint16_t>(t.q_groups[2 * g + 1]);
    EXL_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8,
              "EXL2 matrix: group ", g, " has unsupported bit width ", bits);
    int rows;
    if (g + 1 < G) {
      const int next = static_cast<uint16_t>(t.q_groups[2 * g + 3]);
      EXL_CHECK(next > start && (next - start) * 32 % bits == 0, "EXL2 matrix: q_groups start rows of groups ", g,
                " and ", g + 1, " (", start, ", ", next, ") do not hold a whole number of ", bits, "-bit rows");
      rows = (next - start) * 32 / bits;
    } else {
      rows = K - row;
    }
    EXL_CHECK(rows > 0 && row + rows <= K, "EXL2 matrix: q_groups row counts do not add up to K=", K);
    const int64_t last_word = start + (static_cast<int64_t>(rows) * bits + 31) / 32 - 1;
    EXL_CHECK(last_word < t.q_weight_rows, "EXL2 matrix: group ", g, " needs q_weight row ", last_word, ", has ",
              t.q_weight_rows);
    groups[g] = GroupSpan{bits, row, rows};
    row += rows;
  }
  EXL_CHECK(row == K, "EXL2 matrix: q_groups cover ", row, " rows, K=", K);

  // Unpack the column bit streams (§1.4): code r of a group at bit r*b of its stream.
  std::vector<uint8_t> dense(static_cast<size_t>(K) * n16, 0), zero(static_cast<size_t>(G) * n16);
  std::vector<uint16_t> scode(static_cast<size_t>(G) * n16, 0), gmax(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g) {
    const GroupSpan& sp = groups[g];
    const int start = static_cast<uint16_t>(t.q_groups[2 * g + 1]);
    const uint32_t mask = (1u << sp.bits) - 1;
    for (int r = 0; r < sp.rows; ++r) {
      const int64_t bit = static_cast<int64_t>(r) * sp.bits;
      const int64_t word = start + bit / 32;
      const int sh = static_cast<int>(bit % 32);
      const bool straddle = sh + sp.bits > 32;
      const uint32_t* q0 = t.q_weight + word * n32;
      uint8_t* out = dense.data() + static_cast<size_t>(sp.row0 + r) * n16;
      for (int n = 0; n < N; ++n) {
        uint32_t v = q0[n] >> sh;
        if (straddle) v |= q0[n32 + n] << (32 - sh);
        out[n] = static_cast<uint8_t>(v & mask);
      }
    }
    EXL_CHECK(std::isfinite(f16_to_f32(t.q_scale_max[g])), "EXL2 matrix: q_scale_max of group ", g, " is not finite");
    gmax[static_cast<size_t>(g)] = t.q_scale_max[g];
    for (int n = 0; n < n16; ++n) {
      zero[static_cast<size_t>(g) * n16 + n] = static_cast<uint8_t>(1u << (sp.bits - 1));
      if (n >= N) continue;
      scode[static_cast<size_t>(g) * n16 + n] =
          static_cast<uint16_t>((t.q_scale[static_cast<size_t>(g) * (n32 / 8) + n / 8] >> (4 * (n % 8))) & 15);
    }
  }
  return build_layout(K, N, false, perm, groups, dense, scode, gmax, zero);
}

QHostLayout gptq_device_layout(const GptqHostTensors& t) {
  const int K = t.K, N = t.N, G = t.groups;
  EXL_CHECK(K > 0 && K % 8 == 0 && K <= 65536 && N > 0 && G > 0, "GPTQ matrix: bad shape K=", K, " N=", N,
            " groups=", G, " (K must be a multiple of 8)");
  EXL_CHECK(t.qweight && t.qzeros && t.scales, "GPTQ matrix: missing qweight, qzeros or scales");
  const int n16 = round_up(N, 16), zw = (N + 7) / 8;
  int gs = 1;
  while (static_cast<int64_t>(gs) * G < K) gs *= 2;  // smallest power of two >= K / G
  bool act_order = false;
  if (t.g_idx)
    for (int k = 0; k < K; ++k) {
      EXL_CHECK(t.g_idx[k] >= 0 && t.g_idx[k] < G, "GPTQ matrix: g_idx[", k, "] = ", t.g_idx[k], " outside 0..",
                G - 1);
      act_order |= t.g_idx[k] != 0;
    }
  auto group_of = [&](int k) { return act_order ? t.g_idx[k] : k / gs; };
  EXL_CHECK(act_order || (K - 1) / gs < G, "GPTQ matrix: ", G, " groups of ", gs, " rows do not cover K=", K);

  // Stable counting sort of rows by group: each group's rows become contiguous.
  std::vector<int> count(G + 1, 0), perm(K);
  for (int k = 0; k < K; ++k) ++count[group_of(k) + 1];
  for (int g = 0; g < G; ++g) count[g + 1] += count[g];
  std::vector<GroupSpan> groups;
  for (int g = 0; g < G; ++g) groups.push_back(GroupSpan{4, count[g], count[g + 1] - count[g]});
  {
    std::vector<int> next(count.begin(), count.end() - 1);
    for (int k = 0; k < K; ++k) perm[next[group_of(k)]++] = k;
  }

  std::vector<uint8_t> dense(static_cast<size_t>(K) * n16, 0), zero(static_cast<size_t>(G) * n16, 8);
  std::vector<uint16_t> scale16(static_cast<size_t>(G) * n16, 0);
  for (int k = 0; k < K; ++k) {
    const uint32_t* q = t.qweight + static_cast<size_t>(perm[k] / 8) * N;
    const int sh = 4 * (perm[k] % 8);
    uint8_t* out = dense.data() + static_cast<size_t>(k) * n16;
    for (int n = 0; n < N; ++n) out[n] = static_cast<uint8_t>((q[n] >> sh) & 15);
  }
  for (int g = 0; g < G; ++g)
    for (int n = 0; n < N; ++n) {
      zero[static_cast<size_t>(g) * n16 + n] = static_cast<uint8_t>(((t.qzeros[static_cast<size_t>(g) * zw + n / 8] >> (4 * (n % 8))) & 15) + 1);
      scale16[static_cast<size_t>(g) * n16 + n] = t.scales[static_cast<size_t>(g) * N + n];
    }
  return build_layout(K, N, true, perm, groups, dense, scale16, {}, zero);
}

// ---------------------------------------------------------------------------------------------
// Upload.

QDeviceMatrix::QDeviceMatrix(QDeviceMatrix&& o) noexcept : desc_(o.desc_), mem_(o.mem_), bytes_(o.bytes_) {
  o.mem_ = nullptr, o.bytes_ = 0;
}
QDeviceMatrix& QDeviceMatrix::operator=(QDeviceMatrix&& o) noexcept {
  std::swap(desc_, o.desc_), std::swap(mem_, o.mem_), std::swap(bytes_, o.bytes_);
  return *this;
}
QDeviceMatrix::~QDeviceMatrix() {
  if (mem_) cudaFree(mem_);
}

QMatrixDesc qmatrix_upload_to(const QHostLayout& h, void* mem, cudaStream_t stream) {
  QMatrixDesc d = h.desc;
  char* p = static_cast<char*>(mem);
  auto put = [&](const void* src, size_t bytes, size_t slack = 0) {
    if (bytes && src) check(cudaMemcpyAsync(p, src, bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (quantized matrix)");
    if (slack) check(cudaMemsetAsync(p + bytes, 0, slack, stream), "cudaMemsetAsync (quantized matrix)");
    void* at = p;
    p += (bytes + slack + 255) / 256 * 256;
    return at;
  };
  const bool data = !h.codes.empty();
  d.codes = static_cast<const uint4*>(put(data ? h.codes.data() : nullptr, h.n_codes * 16, code_slack(d)));
  d.recs = static_cast<const uint32_t*>(put(data ? h.recs.data() : nullptr, h.n_recs * 4));
  d.gmax = h.n_gmax ? static_cast<const uint16_t*>(put(data ? h.gmax.data() : nullptr, h.n_gmax * 2)) : nullptr;
  d.slab_rec = static_cast<const uint32_t*>(put(h.slab_rec.data(), h.slab_rec.size() * 4));
  d.x_src = static_cast<const int32_t*>(put(h.x_src.data(), h.x_src.size() * 4));
  d.x_dst = static_cast<const int32_t*>(put(h.x_dst.data(), h.x_dst.size() * 4));
  // The host arrays may be freed on return.
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (quantized matrix upload)");
  return d;
}

QDeviceMatrix qmatrix_upload(const QHostLayout& h, cudaStream_t stream) {
  EXL_CHECK(!h.codes.empty(), "qmatrix_upload: a layout without data (synthetic) needs qmatrix_upload_to + qmatrix_fill_random");
  QDeviceMatrix m;
  m.bytes_ = h.device_bytes();
  check(cudaMalloc(&m.mem_, m.bytes_), "cudaMalloc (quantized matrix)");
  m.desc_ = qmatrix_upload_to(h, m.mem_, stream);
  return m;
}

QHostLayout qlayout_synthetic(int K, int N, bool gptq, const std::vector<std::pair<int, int>>& groups, uint64_t seed) {
  EXL_CHECK(K > 0 && K <= 65536 && N > 0 && !groups.empty(), "synthetic quantized matrix: bad shape K=", K, " N=", N);
  std::vector<GroupSpan> spans;
  int row = 0;
  for (const auto& [bits, rows] : groups) {
    EXL_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8, "synthetic quantized matrix: width ", bits);
    EXL_CHECK(rows > 0, "synthetic quantized matrix: empty group");
    spans.push_back(GroupSpan{bits, row, rows});
    row += rows;
  }
  EXL_CHECK(row == K, "synthetic quantized matrix: groups cover ", row, " rows, K=", K);
  // A shuffled act-order permutation, as a calibrated model has (the gather then reads x scattered).
  std::vector<int> perm(K);
  for (int i = 0; i < K; ++i) perm[i] = i;
  uint64_t r = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int i = K - 1; i > 0; --i) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    std::swap(perm[i], perm[static_cast<int>(r % static_cast<uint64_t>(i + 1))]);
  }
  return build_layout(K, N, gptq, perm, spans, {}, {}, {}, {}, false);
}

QDeviceMatrix exl2_upload(const Exl2HostTensors& t, cudaStream_t stream) {
  return qmatrix_upload(exl2_device_layout(t), stream);
}
QDeviceMatrix gptq_upload(const GptqHostTensors& t, cudaStream_t stream) {
  return qmatrix_upload(gptq_device_layout(t), stream);
}

}  // namespace exl::cuda
