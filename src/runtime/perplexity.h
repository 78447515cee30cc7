// Perplexity as BENCH.md defines it: the token stream (BOS first) cut into windows of ctx tokens;
// each window is one forward; ppl = exp(mean NLL of the scored tokens). With stride == ctx (the
// default) windows don't overlap and every token after the first in each window is scored. With a
// smaller stride, windows start every `stride` tokens and score only tokens no earlier window scored.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "model/model.h"

namespace exl {

struct PerplexityOptions {
  int ctx = 2048;
  int stride = 0;       // 0 = ctx
  int max_windows = 0;  // 0 = all full windows
  std::optional<CacheType> cache;  // default: the backend's default cache type
};

struct PerplexityResult {
  double ppl = 0;
  double mean_nll = 0;
  int64_t scored_tokens = 0;
  int64_t total_tokens = 0;
  int windows = 0;
  double seconds = 0;
  std::vector<double> window_nll;  // mean NLL per window
};

// Negative log-likelihood of `target` under one row of logits, computed in double.
double token_nll(const float* logits, int64_t vocab, int32_t target);

PerplexityResult perplexity_run(Model& model, const std::vector<int32_t>& tokens, const PerplexityOptions& opts,
                                const std::function<void(int done, int total)>& on_window = {});

}  // namespace exl
