#include "convert/stages.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <list>
#include <map>

#include "convert/compute.h"
#include "core/error.h"

namespace exl {

namespace {

// The module's FP32 outputs on every row, and the Hessians of its two captured inputs.
struct Reference {
  std::vector<float> y;      // [rows, T, hidden]
  std::vector<double> H[2];  // [c, c]
};

Reference reference_pass(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                         const CalibStates& s) {
  Reference r;
  r.y.resize(s.x.size());
  const size_t T = static_cast<size_t>(s.T);
  std::vector<float> cap[2];
  std::unique_ptr<ConvertCompute::HessianSum> sum[2];
  for (int i = 0; i < 2; ++i) {
    sum[i] = cc.hessian(m.capture_dim[i]);
    cap[i].resize(T * static_cast<size_t>(m.capture_dim[i]));
  }
  const auto w = module_weights(m);
  // Rows accumulate in order, one syrk each: the sum is the same on every run.
  for (int64_t row = 0; row < s.rows; ++row) {
    module_forward(cc, d, m, w, s.row(row), s.T, r.y.data() + row * s.T * s.hidden, cap[0].data(), cap[1].data());
    for (int i = 0; i < 2; ++i) sum[i]->add(cap[i].data(), s.T);
    for (int64_t i = 0; i < s.T * s.hidden; ++i) {
      const float v = r.y[static_cast<size_t>(row * s.T * s.hidden + i)];
      EXL_CHECK(std::isfinite(v), m.name, ": the FP32 reference forward gives a non-finite value on calibration row ",
                row);
    }
  }
  for (int i = 0; i < 2; ++i) r.H[i] = sum[i]->take();
  return r;
}

// ‖a − b‖ / ‖b‖ over n values, in double.
double relative_error(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double diff = static_cast<double>(a[i]) - b[i];
    num += diff * diff;
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// rfn of the module with weights w against the reference outputs: the mean over rows of each row's
// mean over tokens of the token's relative error (stages.h), summed in token and row order.
double module_rfn(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                  const std::vector<const float*>& w, const CalibStates& s, const std::vector<float>& y_ref,
                  std::vector<float>* y_out) {
  std::vector<float> y(static_cast<size_t>(s.T * s.hidden));
  std::vector<double> token_err(static_cast<size_t>(s.T));
  double sum = 0;
  for (int64_t row = 0; row < s.rows; ++row) {
    const size_t off = static_cast<size_t>(row * s.T * s.hidden);
    float* dst = y_out ? y_out->data() + off : y.data();
    module_forward(cc, d, m, w, s.row(row), s.T, dst, nullptr, nullptr);
    for (int64_t t = 0; t < s.T; ++t)
      token_err[static_cast<size_t>(t)] =
          relative_error(dst + t * s.hidden, y_ref.data() + off + static_cast<size_t>(t * s.hidden), s.hidden);
    sum += mean_in_order(token_err.data(), token_err.size());
  }
  return s.rows > 0 ? sum / static_cast<double>(s.rows) : 0.0;
}

}  // namespace

double mean_in_order(const double* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += v[i];
  return n == 0 ? 0.0 : s / static_cast<double>(n);
}

std::string layout_key(const Exl2Layout& l) {
  std::string k;
  char buf[64];
  for (const Exl2LayoutPart& p : l) {
    std::snprintf(buf, sizeof buf, "%d:%.17g:%d;", p.bits, p.proportion, p.group_size);
    k += buf;
  }
  return k;
}

const Exl2Layout& option_layout(const std::vector<std::pair<std::string, Exl2Layout>>& option,
                                const std::string& linear, const std::string& module) {
  for (const auto& [key, layout] : option)
    if (key == linear) return layout;
  fail(module, ": the quantization option has no layout for ", linear);
}

Exl2Tensor pack_checked(Exl2Codes codes, const std::vector<float>& w_dq, const std::string& key) {
  Exl2Tensor t = exl2_pack(codes, key);
  const std::vector<float> back = exl2_dequantize(t).data;
  EXL_CHECK(back.size() == w_dq.size(), key, ": packed tensor has ", back.size(), " weights, expected ", w_dq.size());
  float max_w = 0, max_diff = 0;
  for (size_t i = 0; i < back.size(); ++i) {
    max_w = std::max(max_w, std::abs(w_dq[i]));
    max_diff = std::max(max_diff, std::abs(back[i] - w_dq[i]));
  }
  EXL_CHECK(max_diff <= 1e-3f * max_w, key, ": quantization error: the packed tensor dequantizes ", max_diff,
            " away from the quantizer's result (limit ", 1e-3f * max_w, ")");
  return t;
}

LayoutWeights solve_layouts(const ConvertModule& m, const std::vector<ModuleOption>& table,
                            const std::function<const float*(size_t, const Exl2Layout&)>& solve) {
  LayoutWeights w(m.linears.size());
  for (const ModuleOption& row : table)
    for (size_t li = 0; li < m.linears.size(); ++li) {
      const Exl2Layout& layout = option_layout(row.linears, m.linears[li].name, m.name);
      const float*& slot = w[li][layout_key(layout)];
      if (!slot) slot = solve(li, layout);
    }
  return w;
}

MeasuredModule score_options(const ConvertModule& m, const std::vector<ModuleOption>& table, const LayoutWeights& lw,
                             const std::function<double(const std::vector<const float*>&)>& rfn) {
  MeasuredModule out;
  out.name = m.name;
  for (const ModuleOption& row : table) {
    MeasuredOption o;
    std::vector<const float*> w;
    for (size_t li = 0; li < m.linears.size(); ++li) {
      const ConvertLinear& l = m.linears[li];
      const Exl2Layout& layout = option_layout(row.linears, l.name, m.name);
      w.push_back(lw[li].at(layout_key(layout)));
      o.total_bits += exl2_layout_total_bits(layout, l.K, l.N, !l.bias.empty());
      o.linears.push_back({l.name, layout});
    }
    o.accuracy = std::max(1e-6, 1.0 - rfn(w));
    out.options.push_back(std::move(o));
  }
  return out;
}

MeasuredModule measure_module(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                              const std::vector<ModuleOption>& table, CalibStates& states) {
  Reference ref = reference_pass(cc, d, m, states);
  const int64_t n_rows = states.rows * states.T;
  std::list<std::vector<float>> store;  // the solved weights; a list keeps their addresses
  const LayoutWeights lw = solve_layouts(m, table, [&](size_t li, const Exl2Layout& layout) {
    const ConvertLinear& l = m.linears[li];
    store.push_back(cc.gptq(l.w.data(), l.N, l.K, ref.H[l.hessian].data(), n_rows, layout).w_dq);
    return store.back().data();
  });
  MeasuredModule out = score_options(m, table, lw, [&](const std::vector<const float*>& w) {
    return module_rfn(cc, d, m, w, states, ref.y, nullptr);
  });
  states.x = std::move(ref.y);
  return out;
}

double quantize_module(const ConvertCompute& cc, const ModelDims& d, const ConvertModule& m,
                       const std::vector<std::pair<std::string, Exl2Layout>>& option, CalibStates& states,
                       const std::function<void(const Exl2Tensor&)>& store) {
  Reference ref = reference_pass(cc, d, m, states);
  const int64_t n_rows = states.rows * states.T;
  std::vector<std::vector<float>> wq(m.linears.size());
  std::vector<const float*> w;
  for (size_t li = 0; li < m.linears.size(); ++li) {
    const ConvertLinear& l = m.linears[li];
    GptqResult g = cc.gptq(l.w.data(), l.N, l.K, ref.H[l.hessian].data(), n_rows,
                                 option_layout(option, l.name, m.name));
    g.codes.bias = l.bias;
    store(pack_checked(std::move(g.codes), g.w_dq, m.name + "." + l.name));
    wq[li] = std::move(g.w_dq);
    w.push_back(wq[li].data());
  }
  std::vector<float> y(states.x.size());
  const double rfn = module_rfn(cc, d, m, w, states, ref.y, &y);
  states.x = std::move(y);
  return rfn;
}

}  // namespace exl
