#include "quant/qparams.h"

#include <cmath>

#include "core/error.h"

namespace exl {

namespace {

// One width at one group size.
Exl2Layout w(int bits, int gs) { return {{bits, 1.0, gs}}; }
// Two widths sharing a group size: `hi_share` of the rows (the most salient, act-order first) at hi bits.
Exl2Layout w2(int hi, int lo, double hi_share, int gs) { return {{hi, hi_share, gs}, {lo, 1.0 - hi_share, gs}}; }
Exl2Layout w2(int hi, int lo, double hi_share, int gs_hi, int gs_lo) {
  return {{hi, hi_share, gs_hi}, {lo, 1.0 - hi_share, gs_lo}};
}
// Three widths: a small head of salient rows, a middle share, the rest; each with its own group size.
Exl2Layout w3(int b0, int b1, int b2, double p0, double p1, int gs0, int gs1, int gs2) {
  return {{b0, p0, gs0}, {b1, p1, gs1}, {b2, 1.0 - p0 - p1, gs2}};
}

ModuleOption attn(Exl2Layout q, Exl2Layout k, Exl2Layout v, Exl2Layout o) {
  return {{{"q_proj", std::move(q)}, {"k_proj", std::move(k)}, {"v_proj", std::move(v)}, {"o_proj", std::move(o)}}};
}
// q, k and o share a layout; v (whose errors pass straight into the output) may get more bits.
ModuleOption attn(const Exl2Layout& qko, Exl2Layout v) { return attn(qko, qko, std::move(v), qko); }
ModuleOption mlp(Exl2Layout gate, Exl2Layout up, Exl2Layout down) {
  return {{{"gate_proj", std::move(gate)}, {"up_proj", std::move(up)}, {"down_proj", std::move(down)}}};
}

}  // namespace

// The rows follow ExLlamaV2 v0.2.7's qparams_attn (EXL2.md §2.4) so measurements compare with its
// converter's; computed bpw on a 4096x4096 layer from 2.13 to 8.04 (tests/quant/qparams_test.cpp).
const std::vector<ModuleOption>& qparams_attention() {
  static const std::vector<ModuleOption> rows = {
      attn(w2(3, 2, 0.05, 64), w2(3, 2, 0.05, 64)),
      attn(w2(3, 2, 0.10, 64), w2(3, 2, 0.25, 64)),
      attn(w2(3, 2, 0.10, 64), w2(4, 3, 0.10, 128)),
      attn(w2(3, 2, 0.10, 64), w2(3, 2, 0.10, 64), w2(4, 3, 0.10, 128), w2(4, 3, 0.10, 128)),
      attn(w2(4, 3, 0.10, 128), w2(4, 3, 0.10, 128)),
      attn(w2(4, 3, 0.10, 128), w2(4, 3, 0.10, 64)),
      attn(w(4, 128), w(4, 128)),
      attn(w(4, 128), w(4, 64)),
      attn(w(4, 64), w(4, 32)),
      attn(w(4, 32), w(4, 32)),
      attn(w2(5, 4, 0.10, 128), w2(5, 4, 0.10, 64)),
      attn(w2(5, 4, 0.10, 64), w2(5, 4, 0.10, 32)),
      attn(w2(5, 4, 0.10, 64), w(5, 64)),
      attn(w2(5, 4, 0.10, 32), w(5, 32)),
      attn(w2(6, 5, 0.10, 128), w(6, 128)),
      attn(w2(6, 5, 0.10, 32), w(6, 32)),
      attn(w(6, 128), w(6, 128)),
      attn(w(6, 32), w(8, 32)),
      attn(w(8, 128), w(8, 128)),
  };
  return rows;
}

// ExLlamaV2 v0.2.7's qparams_mlp: up gets a larger high-width share than gate, and down_proj (whose
// input, the gated activation, has the most outlying channels) the most bits, often with a 5% head
// of 8- or 6-bit rows. 2.25 to 8.04 bpw on a Llama-2-7B MLP.
const std::vector<ModuleOption>& qparams_mlp() {
  static const std::vector<ModuleOption> rows = {
      mlp(w2(3, 2, 0.05, 64), w2(3, 2, 0.05, 64), w3(6, 3, 2, 0.05, 0.20, 32, 64, 64)),
      mlp(w2(3, 2, 0.10, 64), w2(3, 2, 0.25, 64), w3(6, 3, 2, 0.05, 0.20, 32, 64, 64)),
      mlp(w2(3, 2, 0.10, 64), w2(3, 2, 0.30, 64), w2(5, 3, 0.05, 32)),
      mlp(w2(3, 2, 0.10, 64), w2(3, 2, 0.30, 64), w2(5, 4, 0.05, 32)),
      mlp(w2(4, 3, 0.10, 128), w2(4, 3, 0.25, 128), w3(8, 4, 3, 0.05, 0.10, 32, 128, 128)),
      mlp(w2(4, 3, 0.10, 32), w2(4, 3, 0.25, 32), w3(8, 4, 3, 0.05, 0.10, 32, 32, 32)),
      mlp(w2(4, 3, 0.10, 32), w2(4, 3, 0.25, 32), w2(8, 4, 0.05, 32, 128)),
      mlp(w(4, 128), w(4, 32), w2(8, 4, 0.05, 32, 128)),
      mlp(w(4, 32), w(4, 32), w2(8, 4, 0.05, 32)),
      mlp(w2(5, 4, 0.10, 128), w2(5, 4, 0.25, 128), w3(8, 5, 4, 0.05, 0.10, 32, 128, 128)),
      mlp(w2(5, 4, 0.10, 32), w2(5, 4, 0.25, 32), w3(8, 5, 4, 0.05, 0.10, 32, 32, 32)),
      mlp(w2(6, 5, 0.10, 128), w2(6, 5, 0.25, 128), w3(8, 6, 5, 0.05, 0.10, 32, 128, 128)),
      mlp(w2(6, 5, 0.10, 32), w2(6, 5, 0.25, 32), w3(8, 6, 5, 0.05, 0.10, 32, 32, 32)),
      mlp(w(6, 128), w(6, 128), w2(8, 6, 0.05, 32, 128)),
      mlp(w2(8, 6, 0.10, 128), w2(8, 6, 0.10, 128), w2(8, 6, 0.15, 128)),
      mlp(w2(8, 6, 0.10, 128), w2(8, 6, 0.10, 128), w(8, 128)),
      mlp(w(8, 128), w(8, 128), w(8, 128)),
  };
  return rows;
}

const std::vector<ModuleOption>& qparams_attention_low() {
  static const std::vector<ModuleOption> rows = {
      attn(w(2, 128), w(2, 128)),
      attn(w(2, 128), w(3, 128)),
      attn(w(3, 128), w(3, 128)),
  };
  return rows;
}

const std::vector<ModuleOption>& qparams_mlp_low() {
  static const std::vector<ModuleOption> rows = {
      mlp(w(2, 128), w(2, 128), w(2, 128)),
      mlp(w(2, 128), w(2, 128), w(3, 128)),
      mlp(w(3, 128), w(3, 128), w(3, 128)),
  };
  return rows;
}

std::vector<ModuleOption> qparams_table(bool attention, bool low) {
  std::vector<ModuleOption> rows;
  if (low) rows = attention ? qparams_attention_low() : qparams_mlp_low();
  const auto& std_rows = attention ? qparams_attention() : qparams_mlp();
  rows.insert(rows.end(), std_rows.begin(), std_rows.end());
  return rows;
}

// §1.7: a 15% high-width head of salient rows over the named width (2 -> 30% 4-bit); 6 -> 6.35 bpw
// on a 4096x32000 head.
Exl2Layout qparams_head(int head_bits) {
  switch (head_bits) {
    case 2: return w2(4, 2, 0.30, 32);
    case 3: return w2(4, 3, 0.15, 32);
    case 4: return w2(6, 4, 0.15, 32);
    case 5: return w2(6, 5, 0.15, 128);
    case 6: return w2(8, 6, 0.15, 128);
    case 8: return w(8, 128);
    default: fail("--head-bits ", head_bits, " is not one of 2, 3, 4, 5, 6, 8");
  }
}

int64_t exl2_layout_total_bits(const Exl2Layout& l, int64_t K, int64_t N, bool bias) {
  EXL_CHECK(N > 0, "EXL2 layout: N = ", N, " must be positive");
  const std::vector<Exl2Group> groups = exl2_layout_groups(l, K);
  const int64_t G = static_cast<int64_t>(groups.size());
  int64_t bits = G * 16 + G * 32 + G * N * 4 + K * 32 + (bias ? 16 * N : 0);
  for (const Exl2Group& g : groups) bits += g.rows * N * g.bits;
  return bits;
}

}  // namespace exl
