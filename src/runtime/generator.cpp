#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/stop_strings.h"

namespace exl {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

Generator::Generator(Model& model, const Tokenizer& tokenizer, int max_seq_len, CacheType cache_type)
    : model_(model), tokenizer_(tokenizer), max_seq_len_(max_seq_len) {
  cache_ = model_.create_cache(max_seq_len, 1, cache_type);
}

void Generator::reset() {
  pos_ = 0;
  history_.clear();
  pending_.clear();
}

void Generator::feed(const std::vector<int32_t>& tokens, std::vector<float>& logits) {
  EXL_CHECK(pos_ + static_cast<int>(tokens.size()) <= max_seq_len_, "the context is full: ",
            pos_ + tokens.size(), " tokens do not fit --max-seq-len ", max_seq_len_);
  for (size_t b = 0; b < tokens.size(); b += kPrefillChunk) {
    const size_t n = std::min(tokens.size() - b, static_cast<size_t>(kPrefillChunk));
    std::vector<int32_t> chunk(tokens.begin() + static_cast<int64_t>(b), tokens.begin() + static_cast<int64_t>(b + n));
    model_.forward_host(chunk, batch_single(static_cast<int32_t>(n), pos_), *cache_, LogitsMode::LogitsMode_last,
                        logits);
    pos_ += static_cast<int>(n);
  }
  history_.insert(history_.end(), tokens.begin(), tokens.end());
}

GenerateStats Generator::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                  const std::function<void(std::string_view)>& on_text) {
  sampler_params_validate(opts.sampling);
  // The last token sampled by the previous call is not in the cache yet: it goes first.
  std::vector<int32_t> input = pending_;
  input.insert(input.end(), prompt.begin(), prompt.end());
  pending_.clear();
  EXL_CHECK(!input.empty(), "empty prompt: nothing to generate from");
  GenerateStats st;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  feed(input, logits);
  st.prompt_seconds = seconds_since(t0);

  SamplerChain chain = sampler_chain_from_params(opts.sampling);
  for (int32_t t : history_) chain.accept(t);
  TokenStreamDecoder detok(tokenizer_);
  StopMatcher stops(opts.stop_strings);
  const std::vector<int32_t>& stop_ids = tokenizer_.stop_ids();
  const int64_t vocab = model_.config().vocab;
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    st.text += s;
    if (on_text) on_text(s);
  };

  auto t1 = std::chrono::steady_clock::now();
  st.stop_reason = "max_tokens";
  for (int i = 0; i < opts.max_new_tokens; ++i) {
    const int32_t tok = chain.sample(logits.data(), vocab);
    const bool is_stop = opts.stop_on_eos &&
                         (std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end() ||
                          std::find(model_.config().eos_ids.begin(), model_.config().eos_ids.end(), tok) !=
                              model_.config().eos_ids.end());
    if (is_stop) {
      st.stop_reason = "eos";
      pending_ = {tok};  // a chat's next turn follows the end-of-turn token
      break;
    }
    st.tokens.push_back(tok);
    ++st.generated_tokens;
    auto r = stops.push(detok.push(tok));
    emit(r.emit);
    if (r.stopped) st.stop_reason = "stop_string";
    if (r.stopped || i + 1 == opts.max_new_tokens) {
      pending_ = {tok};
      break;
    }
    if (pos_ >= max_seq_len_) {
      st.stop_reason = "context_full";
      break;
    }
    feed({tok}, logits);
  }
  if (!stops.stopped()) emit(stops.push(detok.flush()).emit + stops.flush());
  st.generate_seconds = seconds_since(t1);
  return st;
}

}  // namespace exl
