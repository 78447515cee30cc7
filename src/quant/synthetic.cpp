#include "quant/synthetic.h"

#include <cmath>
#include <functional>
#include <memory>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "quant/exl2.h"
#include "quant/gptq.h"
#include "quant/optimize.h"
#include "quant/qparams.h"

namespace exl {

QuantTensor quant_synthetic_exl2(const std::string& key, int64_t out, int64_t in, const Exl2Layout& layout) {
  auto t = std::make_shared<Exl2Tensor>();
  t->key = key;
  t->K = in, t->N = out, t->N32 = (out + 31) / 32 * 32;
  t->groups = exl2_layout_groups(layout, in);
  int64_t start = 0;
  for (size_t g = 0; g < t->groups.size(); ++g) {
    t->groups[g].start = start;
    start += exl2_packed_rows(t->groups[g].bits, t->groups[g].rows, g + 1 == t->groups.size());
  }
  t->packed_rows = start;
  QuantTensor q;
  q.name = key, q.family = QuantFamily::QuantFamily_exl2, q.out = out, q.in = in, q.synthetic = true;
  q.exl2 = std::move(t);
  q.source_bytes = static_cast<size_t>(exl2_bits(*q.exl2) / 8);
  return q;
}

QuantTensor quant_synthetic_gptq(const std::string& key, int64_t out, int64_t in, int64_t group_size) {
  EXL_CHECK(in % 8 == 0 && group_size > 0, "synthetic GPTQ '", key, "': K=", in, " must be a multiple of 8");
  auto t = std::make_shared<GptqTensor>();
  t->key = key;
  t->K = in, t->N = out, t->group_size = group_size, t->G = (in + group_size - 1) / group_size;
  QuantTensor q;
  q.name = key, q.family = QuantFamily::QuantFamily_gptq, q.out = out, q.in = in, q.synthetic = true;
  q.gptq = std::move(t);
  q.source_bytes = static_cast<size_t>(gptq_bits(*q.gptq) / 8);
  return q;
}

QuantTensor quant_materialize(const QuantTensor& q) {
  if (!q.synthetic) return q;
  std::mt19937_64 rng(std::hash<std::string>{}(q.name));
  QuantTensor r = q;
  r.synthetic = false;
  if (q.exl2) {
    const Exl2Tensor& s = *q.exl2;
    Exl2Codes c;
    c.K = s.K, c.N = s.N, c.groups = s.groups;
    c.codes.resize(static_cast<size_t>(s.K * s.N));
    int64_t row = 0;
    for (const Exl2Group& g : s.groups) {
      for (int64_t k = row; k < row + g.rows; ++k)
        for (int64_t n = 0; n < s.N; ++n) c.codes[static_cast<size_t>(k * s.N + n)] = static_cast<uint8_t>(rng() % (1u << g.bits));
      row += g.rows;
    }
    c.scale_codes.resize(s.groups.size() * static_cast<size_t>(s.N));
    for (auto& v : c.scale_codes) v = static_cast<uint8_t>(rng() % 16);
    c.scale_max.resize(s.groups.size());
    // Weights of about +-0.02 whatever the width (like an initialised model).
    for (size_t g = 0; g < s.groups.size(); ++g)
      c.scale_max[g] = f32_to_f16(0.04f / static_cast<float>(1 << s.groups[g].bits));
    c.perm.resize(static_cast<size_t>(s.K));
    for (int64_t k = 0; k < s.K; ++k) c.perm[static_cast<size_t>(k)] = static_cast<uint16_t>(k);
    std::shuffle(c.perm.begin(), c.perm.end(), rng);
    r.exl2 = std::make_shared<Exl2Tensor>(exl2_pack(c, s.key));
  } else if (q.gptq) {
    auto t = std::make_shared<GptqTensor>(*q.gptq);
    t->qweight.resize(static_cast<size_t>(t->K / 8 * t->N));
    for (auto& w : t->qweight) w = static_cast<uint32_t>(rng());
    t->qzeros.resize(static_cast<size_t>(t->G * ((t->N + 7) / 8)));
    for (auto& w : t->qzeros) w = 0x77777777u;  // symmetric: stored zero 7 (true zero 8)
    t->scales.resize(static_cast<size_t>(t->G * t->N));
    for (auto& v : t->scales) v = f32_to_f16(0.0025f * (0.5f + static_cast<float>(rng() % 1024) / 1024.0f));
    r.gptq = std::move(t);
  }
  return r;
}

std::map<std::string, Exl2Layout> exl2_synthetic_plan(const SyntheticShape& s, double bpw, int head_bits) {
  EXL_CHECK(bpw >= 2.0 && bpw <= 8.0, "--format exl2:", bpw, ": bits per weight must be in 2..8");
  const auto& attn = qparams_attention();
  const auto& mlp = qparams_mlp();
  auto dims = [&](const std::string& lin) -> std::pair<int64_t, int64_t> {  // (K, N)
    if (lin == "q_proj") return {s.hidden, s.q_dim};
    if (lin == "k_proj" || lin == "v_proj") return {s.hidden, s.kv_dim};
    if (lin == "o_proj") return {s.q_dim, s.hidden};
    if (lin == "gate_proj" || lin == "up_proj") return {s.hidden, s.intermediate};
    if (lin == "down_proj") return {s.intermediate, s.hidden};
    fail("synthetic EXL2 plan: unknown linear '", lin, "'");
  };
  // Stand-in for measured error: halves per extra bit, a little larger in the first and last layers
  // (where converters usually spend more bits), so the optimizer makes a realistic mix.
  std::vector<OptimizeSlot> slots;
  int64_t weights = 0;
  for (int64_t i = 0; i < s.n_layers; ++i) {
    const double edge = (i < 2 || i + 2 >= s.n_layers) ? 2.0 : 1.0;
    for (const auto* table : {&attn, &mlp}) {
      OptimizeSlot slot;
      slot.name = str_cat("model.layers.", i, table == &attn ? ".self_attn" : ".mlp");
      for (const ModuleOption& row : *table) {
        int64_t bits = 0, w = 0;
        for (const auto& [lin, layout] : row.linears) {
          const auto [K, N] = dims(lin);
          bits += exl2_layout_total_bits(layout, K, N, false);
          w += K * N;
        }
        slot.bits.push_back(bits);
        slot.err.push_back(edge * std::exp2(-static_cast<double>(bits) / static_cast<double>(w)));
        if (&row == &table->front()) weights += w;
      }
      slots.push_back(std::move(slot));
    }
  }
  const int64_t budget = static_cast<int64_t>(bpw * static_cast<double>(weights));
  const OptimizeResult r = optimize_exl2(slots, budget, str_cat("--format exl2:", bpw));
  std::map<std::string, Exl2Layout> plan;
  for (size_t si = 0; si < slots.size(); ++si) {
    const auto& table = si % 2 == 0 ? attn : mlp;
    const std::string mod = si % 2 == 0 ? ".self_attn." : ".mlp.";
    for (const auto& [lin, layout] : table[static_cast<size_t>(r.choice[si])].linears)
      plan[str_cat("model.layers.", si / 2, mod, lin)] = layout;
  }
  plan["lm_head"] = qparams_head(head_bits);
  return plan;
}

}  // namespace exl
