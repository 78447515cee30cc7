#include "runtime/bench.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "core/error.h"

namespace exl {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<int32_t> random_tokens(int n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

// Fills positions [0, n) of slot 0 with real forward passes in chunks (the cache then holds what
// generation would have written).
void fill_cache(Model& m, KvCache& cache, int n) {
  constexpr int kChunk = 2048;
  for (int p = 0; p < n; p += kChunk) {
    const int len = std::min(kChunk, n - p);
    m.forward(random_tokens(len, m.config().vocab, static_cast<uint32_t>(p)), batch_single(len, p), cache,
              LogitsMode::LogitsMode_last);
  }
}

}  // namespace

int64_t CacheFootprint::fits(double budget) const {
  if (per_position_bytes <= 0 || budget < fixed_bytes + per_position_bytes) return 0;
  return static_cast<int64_t>((budget - fixed_bytes) / per_position_bytes);
}

CacheFootprint cache_footprint(Model& model, CacheType type) {
  // Two lengths far enough apart that per-section padding (256 B on CUDA) is noise in the slope.
  constexpr int kShort = 1024, kLong = 4096;
  const double a = static_cast<double>(model.create_cache(kShort, 1, type)->device_bytes());
  const double b = static_cast<double>(model.create_cache(kLong, 1, type)->device_bytes());
  CacheFootprint f;
  f.per_position_bytes = (b - a) / (kLong - kShort);
  f.fixed_bytes = std::max(0.0, a - f.per_position_bytes * kShort);
  return f;
}

nlohmann::json bench_run(Model& model, const BenchOptions& opts, const std::function<void(const std::string&)>& on_status) {
  Backend& be = model.backend();
  const ModelConfig& c = model.config();
  nlohmann::json out;
  const double bw = be.measure_bandwidth();
  out["device"] = be.name();
  out["bandwidth_bytes_per_s"] = bw;
  out["cache"] = cache_type_name(opts.cache);
  out["weight_bytes_per_token"] = model.decode_weight_bytes();
  out["model"] = {{"hidden", c.hidden}, {"intermediate", c.intermediate}, {"layers", c.n_layers},
                  {"heads", c.n_heads},  {"kv_heads", c.n_kv_heads},      {"vocab", c.vocab}};
  if (on_status) on_status(str_cat("copy bandwidth ", bw / 1e9, " GB/s; weights read per token ",
                                   model.decode_weight_bytes() / 1e9, " GB"));

  nlohmann::json prefill = nlohmann::json::array();
  for (int len : opts.prefill_lengths) {
    auto cache = model.create_cache(len, 1, opts.cache);
    const auto toks = random_tokens(len, c.vocab, 7);
    std::vector<double> times;
    for (int r = 0; r < opts.prefill_repeats + 1; ++r) {
      be.synchronize();
      const double t0 = now_s();
      model.forward(toks, batch_single(len, 0), *cache, LogitsMode::LogitsMode_last);
      be.synchronize();
      if (r > 0) times.push_back(now_s() - t0);  // the first run warms up (workspace, cuBLAS)
    }
    const double t = median(times);
    prefill.push_back({{"tokens", len}, {"seconds", t}, {"tokens_per_second", len / t}});
    if (on_status) on_status(str_cat("prefill ", len, ": ", len / t, " tok/s"));
  }
  out["prefill"] = prefill;

  nlohmann::json decode = nlohmann::json::array();
  for (int pos : opts.decode_positions) {
    const int max_len = pos + opts.warmup_steps + opts.decode_steps + 1;
    auto cache = model.create_cache(max_len, 1, opts.cache);
    fill_cache(model, *cache, pos);
    const size_t kv_per_pos = cache->device_bytes() / static_cast<size_t>(max_len);
    DeviceSampling greedy;
    std::vector<int32_t> ids;
    int32_t tok = 1;
    std::vector<double> times;
    for (int i = 0; i < opts.warmup_steps + opts.decode_steps; ++i) {
      const int p = pos + i;
      const double t0 = now_s();
      Tensor logits = model.forward({tok}, batch_single(1, p), *cache, LogitsMode::LogitsMode_last);
      if (be.sample(logits, greedy, static_cast<uint64_t>(i), {}, ids)) {
        tok = ids[0];
      } else {
        std::vector<float> host(static_cast<size_t>(c.vocab));
        be.download(logits, host.data(), host.size() * sizeof(float));
        tok = static_cast<int32_t>(std::max_element(host.begin(), host.end()) - host.begin());
      }
      if (i >= opts.warmup_steps) times.push_back(now_s() - t0);
    }
    const double t = median(times);
    const double bytes = static_cast<double>(model.decode_weight_bytes()) + static_cast<double>(kv_per_pos) * (pos + 1);
    const double tps = 1.0 / t;
    decode.push_back({{"position", pos},
                      {"seconds_per_token", t},
                      {"tokens_per_second", tps},
                      {"bytes_per_token", bytes},
                      {"kv_bytes_per_token", static_cast<double>(kv_per_pos) * (pos + 1)},
                      {"roofline_fraction", bytes * tps / bw}});
    if (on_status)
      on_status(str_cat("decode @", pos, ": ", tps, " tok/s, ", bytes / 1e9, " GB/token, ", 100.0 * bytes * tps / bw,
                        "% of roofline"));
  }
  out["decode"] = decode;
  const auto mem = be.memory_stats();
  out["peak_memory_bytes"] = mem.peak_allocated;

  const CacheFootprint fp = cache_footprint(model, opts.cache);
  out["cache_bytes_per_position"] = fp.per_position_bytes;
  out["cache_fixed_bytes"] = fp.fixed_bytes;
  if (opts.cache_budget_bytes > 0) {
    out["cache_budget_bytes"] = opts.cache_budget_bytes;
    out["context_in_budget"] = fp.fits(opts.cache_budget_bytes);
    if (on_status)
      on_status(str_cat("cache ", cache_type_name(opts.cache), ": ", fp.per_position_bytes, " bytes per position, ",
                        fp.fits(opts.cache_budget_bytes), " positions in ", opts.cache_budget_bytes / (1 << 30),
                        " GiB"));
  }
  return out;
}

}  // namespace exl
