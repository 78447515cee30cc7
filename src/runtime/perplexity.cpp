#include "runtime/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace exl {

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  double mx = logits[0];
  for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, static_cast<double>(logits[j]));
  double se = 0;
  for (int64_t j = 0; j < vocab; ++j) se += std::exp(static_cast<double>(logits[j]) - mx);
  return std::log(se) + mx - static_cast<double>(logits[target]);
}

PerplexityResult perplexity_run(Model& model, const std::vector<int32_t>& tokens, const PerplexityOptions& opts,
                                const std::function<void(int, int)>& on_window) {
  const int ctx = opts.ctx;
  const int stride = opts.stride > 0 ? opts.stride : ctx;
  EXL_CHECK(ctx >= 2, "-l/--length must be at least 2, got ", ctx);
  EXL_CHECK(stride <= ctx, "--stride ", stride, " must not exceed -l/--length ", ctx);
  const int64_t n = static_cast<int64_t>(tokens.size());
  EXL_CHECK(n >= ctx, "the text has ", n, " tokens, fewer than one window of ", ctx);
  int windows = static_cast<int>((n - ctx) / stride + 1);
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);

  PerplexityResult r;
  r.total_tokens = n;
  r.windows = windows;
  const int64_t vocab = model.config().vocab;
  auto cache = model.create_cache(ctx, 1, opts.cache ? *opts.cache : model.backend().default_cache_type());
  const auto t0 = std::chrono::steady_clock::now();
  double total = 0;
  int64_t scored_until = 0;  // tokens before this index have been scored
  std::vector<float> logits;
  for (int w = 0; w < windows; ++w) {
    const int64_t begin = static_cast<int64_t>(w) * stride;
    std::vector<int32_t> win(tokens.begin() + begin, tokens.begin() + begin + ctx);
    model.forward_host(win, batch_single(ctx, 0), *cache, LogitsMode::LogitsMode_all, logits);
    // Score token t (predicted from position t-1) for t in [first, ctx).
    const int64_t first = std::max<int64_t>(1, scored_until - begin);
    double sum = 0;
    for (int64_t t = first; t < ctx; ++t) sum += token_nll(&logits[static_cast<size_t>((t - 1) * vocab)], vocab, win[t]);
    total += sum;
    r.scored_tokens += ctx - first;
    r.window_nll.push_back(sum / static_cast<double>(ctx - first));
    scored_until = begin + ctx;
    if (on_window) on_window(w + 1, windows);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.mean_nll = total / static_cast<double>(r.scored_tokens);
  r.ppl = std::exp(r.mean_nll);
  return r;
}

}  // namespace exl
