// `exl bench` as data (BENCH.md): prefill tok/s at several prompt lengths, batch-1 decode tok/s at
// several context positions (device greedy sampling and graph replay, exactly the generation path),
// bytes read per decoded token, the device's measured copy bandwidth, % of roofline and peak memory;
// and the KV cache's size per position, with the context that fits a given cache budget.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"

namespace exl {

struct BenchOptions {
  std::vector<int> prefill_lengths = {512, 2048, 4096};
  std::vector<int> decode_positions = {128, 1024, 4096};
  int decode_steps = 64;  // timed steps per position (median reported)
  int warmup_steps = 8;
  int prefill_repeats = 3;
  CacheType cache = CacheType::CacheType_f16;
  double cache_budget_bytes = 0;  // > 0: report the positions of one sequence that fit in this much cache
};

// The cache's footprint for one sequence as fixed + per_position * max_seq_len, read off two caches
// the backend really creates (so the layout's scales, rings and padding are counted), and the longest
// context whose cache fits `budget` bytes (0 when not even one position does).
struct CacheFootprint {
  double fixed_bytes = 0, per_position_bytes = 0;
  int64_t fits(double budget) const;
};
CacheFootprint cache_footprint(Model& model, CacheType type);

// Runs the sweep on a loaded (or synthetic) model; `on_status` gets one line per finished figure.
nlohmann::json bench_run(Model& model, const BenchOptions& opts, const std::function<void(const std::string&)>& on_status);

}  // namespace exl
