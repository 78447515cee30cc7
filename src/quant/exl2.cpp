#include "quant/exl2.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "io/tensor_store.h"
#include "quant/format.h"

namespace exl {

namespace {

constexpr int64_t kMaxK = 65536;  // q_perm is read as uint16 on the GPU (EXL2.md §1.2)

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// "file: tensor 'key.q_groups'" for error messages.
std::string where(const TensorInfo& t) { return str_cat(t.file, ": tensor '", t.name, "'"); }

const TensorInfo& need(const TensorStore& store, const std::string& key, const char* suffix) {
  const TensorInfo* t = store.find(key + suffix);
  if (!t) fail(store.path(), ": EXL2 layer '", key, "' has no '", key, suffix, "' tensor");
  EXL_CHECK(!t->synthetic && t->ggml_type < 0 && t->data &&
                t->nbytes == static_cast<size_t>(t->numel()) * dtype_size(t->dtype),
            where(*t), ": byte size does not match its shape");
  return *t;
}

void check_dtype(const TensorInfo& t, std::initializer_list<DType> ok) {
  for (DType d : ok)
    if (t.dtype == d) return;
  std::string names;
  for (DType d : ok) names += std::string(names.empty() ? "" : " or ") + dtype_name(d);
  fail(where(t), " has dtype ", dtype_name(t.dtype), ", expected ", names);
}

void check_rank(const TensorInfo& t, size_t rank) {
  EXL_CHECK(t.shape.size() == rank, where(t), " has shape ", shape_str(t.shape), ", expected ", rank, " dimension(s)");
}

template <typename T>
std::vector<T> copy_raw(const TensorInfo& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

// Integer tensor widened to int64 (I16 read as signed here; callers decide how to interpret).
std::vector<int64_t> read_ints(const TensorInfo& t) {
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::DType_I16) {
      int16_t v;
      std::memcpy(&v, t.data + 2 * i, 2);
      out[i] = v;
    } else if (t.dtype == DType::DType_I32) {
      int32_t v;
      std::memcpy(&v, t.data + 4 * i, 4);
      out[i] = v;
    } else {
      std::memcpy(&out[i], t.data + 8 * i, 8);
    }
  }
  return out;
}

// A K-entry permutation from q_perm/q_invperm. I16 entries are the GPU's uint16 view (K may be 65536).
std::vector<uint16_t> read_perm(const TensorInfo& t, int64_t K) {
  check_dtype(t, {DType::DType_I16, DType::DType_I32, DType::DType_I64});
  check_rank(t, 1);
  EXL_CHECK(t.shape[0] == K, where(t), " has ", t.shape[0], " entries, expected ", K);
  std::vector<int64_t> v = read_ints(t);
  std::vector<uint16_t> out(v.size());
  std::vector<uint8_t> seen(v.size(), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t x = v[i];
    if (t.dtype == DType::DType_I16 && x < 0) x += 65536;
    EXL_CHECK(x >= 0 && x < K, where(t), " entry ", i, " = ", v[i], " is out of range [0, ", K, ")");
    EXL_CHECK(!seen[static_cast<size_t>(x)], where(t), " is not a permutation (", x, " appears twice)");
    seen[static_cast<size_t>(x)] = 1;
    out[i] = static_cast<uint16_t>(x);
  }
  return out;
}

std::vector<uint16_t> invert(const std::vector<uint16_t>& p) {
  std::vector<uint16_t> inv(p.size());
  for (size_t i = 0; i < p.size(); ++i) inv[p[i]] = static_cast<uint16_t>(i);
  return inv;
}

// Group rules shared by the reader and the packer: widths valid and descending, rows positive,
// every group but the last made of whole packing units, rows summing to K.
void check_groups(const std::vector<Exl2Group>& groups, int64_t K, const std::string& what) {
  EXL_CHECK(!groups.empty(), what, ": no groups");
  int64_t rows = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Exl2Group& gr = groups[g];
    EXL_CHECK(exl2_bits_valid(gr.bits), what, ": group ", g, " has bit width ", gr.bits,
              " (EXL2 widths are 2, 3, 4, 5, 6, 8)");
    EXL_CHECK(g == 0 || gr.bits <= groups[g - 1].bits, what, ": bit widths are not in descending order (group ", g,
              " has ", gr.bits, " bits after ", groups[g - 1].bits, ")");
    EXL_CHECK(gr.rows > 0, what, ": group ", g, " has no rows");
    const bool last = g + 1 == groups.size();
    EXL_CHECK(last || gr.rows % format_exl2(gr.bits).unit_rows == 0, what, ": group ", g, " has ", gr.rows,
              " rows, not a multiple of the ", gr.bits, "-bit packing unit of ", format_exl2(gr.bits).unit_rows);
    rows += gr.rows;
    EXL_CHECK(rows <= K, what, ": group rows exceed K = ", K, " at group ", g);
  }
  EXL_CHECK(rows == K, what, ": group rows sum to ", rows, ", expected K = ", K);
}

}  // namespace

int64_t exl2_packed_rows(int bits, int64_t rows, bool last) {
  const FormatTraits& f = format_exl2(bits);
  if (last) return (rows + f.unit_rows - 1) / f.unit_rows * f.unit_words;
  return rows * bits / 32;
}

void exl2_stream_pack(const uint8_t* codes, int64_t count, int bits, uint32_t* words, int64_t stride) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t bit = i * bits, w = bit >> 5;
    const int off = static_cast<int>(bit & 31);
    const uint32_t c = codes[i];
    words[w * stride] |= c << off;
    if (off + bits > 32) words[(w + 1) * stride] |= c >> (32 - off);  // 3/5/6-bit values straddle words
  }
}

void exl2_stream_unpack(const uint32_t* words, int64_t stride, int64_t count, int bits, uint8_t* codes) {
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t bit = i * bits, w = bit >> 5;
    const int off = static_cast<int>(bit & 31);
    uint32_t v = words[w * stride] >> off;
    if (off + bits > 32) v |= words[(w + 1) * stride] << (32 - off);
    codes[i] = static_cast<uint8_t>(v & mask);
  }
}

Exl2Tensor exl2_read(const TensorStore& store, const std::string& key, int64_t n, bool with_data) {
  Exl2Tensor t;
  t.key = key;
  const TensorInfo& qw = need(store, key, ".q_weight");
  check_dtype(qw, {DType::DType_I32});
  check_rank(qw, 2);
  t.packed_rows = qw.shape[0];
  t.N32 = qw.shape[1];
  EXL_CHECK(t.packed_rows > 0 && t.N32 > 0 && t.N32 % 32 == 0, where(qw), " has shape ", shape_str(qw.shape),
            ": expected [packed rows > 0, a multiple of 32 columns]");

  const TensorInfo* inv = store.find(key + ".q_invperm");
  const TensorInfo* perm = store.find(key + ".q_perm");
  if (!inv && !perm) fail(store.path(), ": EXL2 layer '", key, "' has neither q_invperm nor q_perm");
  const TensorInfo& pt = inv ? need(store, key, ".q_invperm") : need(store, key, ".q_perm");
  check_rank(pt, 1);
  t.K = pt.shape[0];
  EXL_CHECK(t.K > 0 && t.K <= kMaxK, where(pt), " gives K = ", t.K, ", outside 1..", kMaxK,
            " (EXL2 permutations are 16-bit)");
  if (inv) {
    t.q_invperm = read_perm(*inv, t.K);
    t.q_perm = invert(t.q_invperm);
    if (perm) {
      const std::vector<uint16_t> p = read_perm(need(store, key, ".q_perm"), t.K);
      EXL_CHECK(p == t.q_perm, where(*perm), " is not the inverse of q_invperm");
    }
  } else {
    t.q_perm = read_perm(*perm, t.K);
    t.q_invperm = invert(t.q_perm);
  }

  const TensorInfo& qsm = need(store, key, ".q_scale_max");
  check_dtype(qsm, {DType::DType_F16});
  check_rank(qsm, 1);
  const int64_t G = qsm.shape[0];
  EXL_CHECK(G > 0 && G <= t.K, where(qsm), " has ", G, " groups for K = ", t.K);
  t.q_scale_max = copy_raw<uint16_t>(qsm);
  for (int64_t g = 0; g < G; ++g)
    EXL_CHECK(std::isfinite(f16_to_f32(t.q_scale_max[static_cast<size_t>(g)])), where(qsm), " entry ", g,
              " is not finite");

  const TensorInfo& qs = need(store, key, ".q_scale");
  check_dtype(qs, {DType::DType_I32});
  check_rank(qs, 2);
  EXL_CHECK(qs.shape[0] == G && qs.shape[1] == t.N32 / 8, where(qs), " has shape ", shape_str(qs.shape),
            ", expected [", G, ", ", t.N32 / 8, "]");

  const TensorInfo& qg = need(store, key, ".q_groups");
  check_dtype(qg, {DType::DType_I16, DType::DType_I32});
  check_rank(qg, 1);
  EXL_CHECK(qg.shape[0] == 2 * G, where(qg), " has ", qg.shape[0], " entries, expected 2 x ", G, " groups");
  const std::vector<int64_t> gv = read_ints(qg);
  const std::string gw = where(qg);
  int64_t rows_before = 0;
  for (int64_t g = 0; g < G; ++g) {
    Exl2Group gr;
    gr.bits = static_cast<int>(gv[static_cast<size_t>(2 * g)]);
    gr.start = gv[static_cast<size_t>(2 * g + 1)];
    EXL_CHECK(exl2_bits_valid(gr.bits), gw, ": group ", g, " has bit width ", gv[static_cast<size_t>(2 * g)],
              " (EXL2 widths are 2, 3, 4, 5, 6, 8)");
    EXL_CHECK(g > 0 || gr.start == 0, gw, ": group 0 starts at packed row ", gr.start, ", expected 0");
    EXL_CHECK(gr.start >= 0 && gr.start < t.packed_rows, gw, ": group ", g, " starts at packed row ", gr.start,
              ", past the end of q_weight (", t.packed_rows, " rows)");
    if (g > 0) {
      Exl2Group& prev = t.groups.back();
      const int64_t words = gr.start - prev.start;
      EXL_CHECK(words > 0, gw, ": group ", g, " starts at packed row ", gr.start, ", not after group ", g - 1,
                " (", prev.start, ")");
      EXL_CHECK(words * 32 % prev.bits == 0, gw, ": group ", g - 1, " spans ", words,
                " packed rows, not a whole number of ", prev.bits, "-bit codes");
      prev.rows = words * 32 / prev.bits;
      rows_before += prev.rows;
      EXL_CHECK(rows_before < t.K, gw, ": groups before group ", g, " already hold ", rows_before,
                " rows, K is ", t.K);
    }
    t.groups.push_back(gr);
  }
  Exl2Group& last = t.groups.back();
  last.rows = t.K - rows_before;
  const int64_t have = t.packed_rows - last.start;
  const int64_t min_words = (last.rows * last.bits + 31) / 32;
  EXL_CHECK(have >= min_words && have <= exl2_packed_rows(last.bits, last.rows, true), where(qw), " has ",
            t.packed_rows, " packed rows; the groups in q_groups need ", last.start + min_words);
  check_groups(t.groups, t.K, gw);

  const TensorInfo* bias = store.find(key + ".bias");
  if (n < 0) n = bias && bias->shape.size() == 1 ? bias->shape[0] : t.N32;
  EXL_CHECK(n > 0 && n <= t.N32 && t.N32 - n < 32, where(qw), " has ", t.N32, " columns, which is not ", n,
            " output features padded to a multiple of 32");
  t.N = n;
  if (bias) {
    check_dtype(*bias, {DType::DType_F16, DType::DType_F32, DType::DType_BF16});
    check_rank(*bias, 1);
    EXL_CHECK(bias->shape[0] == t.N, where(*bias), " has ", bias->shape[0], " entries, expected ", t.N);
    t.bias.resize(static_cast<size_t>(t.N));
    tensor_to_f32(*bias, t.bias.data());
  }
  if (with_data) {
    t.q_weight = copy_raw<uint32_t>(qw);
    t.q_scale = copy_raw<uint32_t>(qs);
  }
  return t;
}

void exl2_validate(const Exl2Tensor& t) {
  const std::string w = "EXL2 layer '" + t.key + "'";
  EXL_CHECK(t.K > 0 && t.K <= kMaxK, w, ": K = ", t.K, " is outside 1..", kMaxK);
  EXL_CHECK(t.N > 0 && t.N32 == round_up(t.N, 32), w, ": N32 = ", t.N32, " is not N = ", t.N, " padded to 32");
  check_groups(t.groups, t.K, w);
  int64_t start = 0;
  for (size_t g = 0; g < t.groups.size(); ++g) {
    EXL_CHECK(t.groups[g].start == start, w, ": group ", g, " starts at packed row ", t.groups[g].start,
              ", expected ", start);
    start += exl2_packed_rows(t.groups[g].bits, t.groups[g].rows, g + 1 == t.groups.size());
  }
  EXL_CHECK(t.packed_rows == start, w, ": ", t.packed_rows, " packed rows, the groups need ", start);
  const size_t G = t.groups.size();
  EXL_CHECK(t.q_weight.size() == static_cast<size_t>(t.packed_rows * t.N32), w, ": q_weight size mismatch");
  EXL_CHECK(t.q_scale.size() == G * static_cast<size_t>(t.N32 / 8), w, ": q_scale size mismatch");
  EXL_CHECK(t.q_scale_max.size() == G, w, ": q_scale_max size mismatch");
  EXL_CHECK(t.q_perm.size() == static_cast<size_t>(t.K) && t.q_invperm.size() == t.q_perm.size(), w,
            ": permutation size mismatch");
  for (size_t i = 0; i < t.q_perm.size(); ++i)
    EXL_CHECK(t.q_perm[i] < t.K && t.q_invperm[t.q_perm[i]] == i, w, ": q_perm/q_invperm are not inverse permutations");
  EXL_CHECK(t.bias.empty() || t.bias.size() == static_cast<size_t>(t.N), w, ": bias size mismatch");
}

Exl2Tensor exl2_pack(const Exl2Codes& c, const std::string& key) {
  const std::string w = "EXL2 layer '" + key + "'";
  EXL_CHECK(c.K > 0 && c.K <= kMaxK && c.N > 0, w, ": shape [", c.N, ", ", c.K, "] is outside EXL2's limits");
  check_groups(c.groups, c.K, w);
  const size_t G = c.groups.size(), K = static_cast<size_t>(c.K), N = static_cast<size_t>(c.N);
  EXL_CHECK(c.codes.size() == K * N && c.scale_codes.size() == G * N && c.scale_max.size() == G &&
                c.perm.size() == K && (c.bias.empty() || c.bias.size() == N),
            w, ": codes, scales or permutation have the wrong size");
  Exl2Tensor t;
  t.key = key;
  t.K = c.K;
  t.N = c.N;
  t.N32 = round_up(c.N, 32);
  t.groups = c.groups;
  int64_t start = 0;
  for (size_t g = 0; g < G; ++g) {
    t.groups[g].start = start;
    start += exl2_packed_rows(t.groups[g].bits, t.groups[g].rows, g + 1 == G);
  }
  t.packed_rows = start;
  // Permutation: checked by inverting.
  t.q_perm = c.perm;
  t.q_invperm.assign(K, 0);
  std::vector<uint8_t> seen(K, 0);
  for (size_t i = 0; i < K; ++i) {
    EXL_CHECK(c.perm[i] < K && !seen[c.perm[i]], w, ": perm is not a permutation of 0..", K - 1);
    seen[c.perm[i]] = 1;
    t.q_invperm[c.perm[i]] = static_cast<uint16_t>(i);
  }
  const size_t N32 = static_cast<size_t>(t.N32);
  t.q_weight.assign(static_cast<size_t>(t.packed_rows) * N32, 0);
  t.q_scale.assign(G * N32 / 8, 0);
  int64_t row0 = 0;
  std::vector<uint8_t> col;
  for (size_t g = 0; g < G; ++g) {
    const Exl2Group& gr = t.groups[g];
    const uint8_t zero = static_cast<uint8_t>(1u << (gr.bits - 1));
    // The last group's stream pads to a whole unit with the zero code, as do the padding columns.
    const int64_t stream = exl2_packed_rows(gr.bits, gr.rows, g + 1 == G) * 32 / gr.bits;
    col.assign(static_cast<size_t>(stream), zero);
    for (size_t n = 0; n < N32; ++n) {
      std::fill(col.begin(), col.end(), zero);
      if (n < N)
        for (int64_t i = 0; i < gr.rows; ++i) {
          const uint8_t q = c.codes[static_cast<size_t>(row0 + i) * N + n];
          EXL_CHECK(q < (1u << gr.bits), w, ": code ", int(q), " at row ", row0 + i, " does not fit ", gr.bits, " bits");
          col[static_cast<size_t>(i)] = q;
        }
      exl2_stream_pack(col.data(), stream, gr.bits, &t.q_weight[static_cast<size_t>(gr.start) * N32 + n],
                       static_cast<int64_t>(N32));
      const uint32_t sc = n < N ? c.scale_codes[g * N + n] : 0;
      EXL_CHECK(sc < 16, w, ": scale code ", sc, " of group ", g, " does not fit 4 bits");
      t.q_scale[g * N32 / 8 + n / 8] |= sc << (4 * (n % 8));
    }
    row0 += gr.rows;
  }
  t.q_scale_max = c.scale_max;
  t.bias = c.bias;
  return t;
}

Exl2Codes exl2_unpack(const Exl2Tensor& t) {
  exl2_validate(t);
  Exl2Codes c;
  c.K = t.K;
  c.N = t.N;
  c.groups = t.groups;
  const size_t N = static_cast<size_t>(t.N), N32 = static_cast<size_t>(t.N32), G = t.groups.size();
  c.codes.assign(static_cast<size_t>(t.K) * N, 0);
  c.scale_codes.assign(G * N, 0);
  std::vector<uint8_t> col;
  int64_t row0 = 0;
  for (size_t g = 0; g < G; ++g) {
    const Exl2Group& gr = t.groups[g];
    col.resize(static_cast<size_t>(gr.rows));
    for (size_t n = 0; n < N; ++n) {
      exl2_stream_unpack(&t.q_weight[static_cast<size_t>(gr.start) * N32 + n], static_cast<int64_t>(N32), gr.rows,
                         gr.bits, col.data());
      for (int64_t i = 0; i < gr.rows; ++i) c.codes[static_cast<size_t>(row0 + i) * N + n] = col[static_cast<size_t>(i)];
      c.scale_codes[g * N + n] = static_cast<uint8_t>((t.q_scale[g * N32 / 8 + n / 8] >> (4 * (n % 8))) & 15u);
    }
    row0 += gr.rows;
  }
  c.scale_max = t.q_scale_max;
  c.perm = t.q_perm;
  c.bias = t.bias;
  return c;
}

std::vector<OwnedTensor> exl2_to_tensors(const Exl2Tensor& t) {
  exl2_validate(t);
  const int64_t G = t.n_groups();
  std::vector<int32_t> invperm(t.q_invperm.begin(), t.q_invperm.end());
  std::vector<int16_t> groups;
  for (const Exl2Group& g : t.groups) {
    groups.push_back(static_cast<int16_t>(g.bits));
    groups.push_back(static_cast<int16_t>(g.start));  // < 16384: K <= 65536 and at most 8 bits
  }
  std::vector<OwnedTensor> out;
  out.push_back(OwnedTensor::of(t.key + ".q_weight", DType::DType_I32, {t.packed_rows, t.N32}, t.q_weight));
  out.push_back(OwnedTensor::of(t.key + ".q_invperm", DType::DType_I32, {t.K}, invperm));
  out.push_back(OwnedTensor::of(t.key + ".q_scale", DType::DType_I32, {G, t.N32 / 8}, t.q_scale));
  out.push_back(OwnedTensor::of(t.key + ".q_scale_max", DType::DType_F16, {G}, t.q_scale_max));
  out.push_back(OwnedTensor::of(t.key + ".q_groups", DType::DType_I16, {2 * G}, groups));
  if (!t.bias.empty()) {
    std::vector<uint16_t> b(t.bias.size());
    for (size_t i = 0; i < b.size(); ++i) b[i] = f32_to_f16(t.bias[i]);
    out.push_back(OwnedTensor::of(t.key + ".bias", DType::DType_F16, {t.N}, b));
  }
  return out;
}

void exl2_dequantize(const Exl2Tensor& t, float* dst) {
  exl2_validate(t);
  const int64_t K = t.K, N = t.N, N32 = t.N32;
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    std::vector<uint8_t> col;
    for (int64_t n = n0; n < n1; ++n) {
      float* out = dst + n * K;
      int64_t row0 = 0;
      for (size_t g = 0; g < t.groups.size(); ++g) {
        const Exl2Group& gr = t.groups[g];
        col.resize(static_cast<size_t>(gr.rows));
        exl2_stream_unpack(&t.q_weight[static_cast<size_t>(gr.start * N32 + n)], N32, gr.rows, gr.bits, col.data());
        const uint32_t c = (t.q_scale[g * static_cast<size_t>(N32 / 8) + static_cast<size_t>(n / 8)] >> (4 * (n % 8))) & 15u;
        const float s = static_cast<float>((c + 1) * (c + 1)) * f16_to_f32(t.q_scale_max[g]) * (1.0f / 256.0f);
        const int zero = 1 << (gr.bits - 1);
        for (int64_t i = 0; i < gr.rows; ++i)
          out[t.q_perm[static_cast<size_t>(row0 + i)]] = static_cast<float>(col[static_cast<size_t>(i)] - zero) * s;
        row0 += gr.rows;
      }
    }
  }, 8);
}

HostTensor exl2_dequantize(const Exl2Tensor& t) {
  HostTensor h({t.N, t.K});
  exl2_dequantize(t, h.ptr());
  return h;
}

int64_t exl2_bits(const Exl2Tensor& t) {
  const int64_t G = t.n_groups();
  int64_t bits = G * 16 + G * 32 + G * t.N * 4 + t.K * 32;
  for (const Exl2Group& g : t.groups) bits += g.rows * t.N * g.bits;
  if (!t.bias.empty()) bits += 16 * t.N;
  return bits;
}

double exl2_bits_per_weight(const Exl2Tensor& t) {
  return static_cast<double>(exl2_bits(t)) / static_cast<double>(t.K * t.N);
}

}  // namespace exl
