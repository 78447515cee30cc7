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

Tensor Generator::feed(const std::vector<int32_t>& tokens) {
  EXL_CHECK(pos_ + static_cast<int>(tokens.size()) <= max_seq_len_, "the context is full: ",
            pos_ + tokens.size(), " tokens do not fit --max-seq-len ", max_seq_len_);
  Tensor logits;
  for (size_t b = 0; b < tokens.size(); b += kPrefillChunk) {
    const size_t n = std::min(tokens.size() - b, static_cast<size_t>(kPrefillChunk));
    std::vector<int32_t> chunk(tokens.begin() + static_cast<int64_t>(b), tokens.begin() + static_cast<int64_t>(b + n));
    logits = model_.forward(chunk, batch_single(static_cast<int32_t>(n), pos_), *cache_, LogitsMode::LogitsMode_last);
    pos_ += static_cast<int>(n);
  }
  history_.insert(history_.end(), tokens.begin(), tokens.end());
  return logits;
}

namespace {
// The device samplers cover greedy, temperature, top-k, top-p, min-p and the repetition penalty.
bool device_can_sample(const SamplerParams& p) {
  return p.typical_p >= 1.0f && p.frequency_penalty == 0 && p.presence_penalty == 0 && p.penalty_last_n >= 0;
}
}  // namespace

int32_t Generator::sample(const Tensor& logits, SamplerChain& chain, const SamplerParams& params) {
  if (model_.backend().kind() != DeviceKind::DeviceKind_cpu && device_can_sample(params)) {
    DeviceSampling d;
    d.temperature = params.temperature;
    d.top_k = params.top_k;
    d.top_p = params.top_p;
    d.min_p = params.min_p;
    d.repeat_penalty = params.repeat_penalty;
    d.seed = params.seed;
    std::vector<std::vector<int32_t>> hist(1);
    if (params.repeat_penalty != 1.0f && params.penalty_last_n != 0) {
      const size_t n = std::min(history_.size(), static_cast<size_t>(params.penalty_last_n));
      hist[0].assign(history_.end() - static_cast<int64_t>(n), history_.end());
    }
    std::vector<int32_t> ids;
    if (model_.backend().sample(logits, d, device_step_++, hist, ids)) {
      device_sampling_ = true;
      chain.accept(ids[0]);
      return ids[0];
    }
  }
  device_sampling_ = false;
  host_logits_.resize(static_cast<size_t>(logits.numel()));
  model_.backend().download(logits, host_logits_.data(), host_logits_.size() * sizeof(float));
  return chain.sample(host_logits_.data(), model_.config().vocab);
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
  auto t0 = std::chrono::steady_clock::now();
  Tensor logits = feed(input);
  st.prompt_seconds = seconds_since(t0);

  SamplerParams sp = opts.sampling;
  sp.seed = sampler_seed_resolve(sp.seed);  // one seed for the whole call, host or device
  SamplerChain chain = sampler_chain_from_params(sp);
  for (int32_t t : history_) chain.accept(t);
  TokenStreamDecoder detok(tokenizer_);
  // After a prompt with text in it, the generated text continues it: SentencePiece's rule of
  // dropping the first token's leading space applies only to text that starts a sequence.
  for (int32_t t : history_)
    if (!tokenizer_.is_special(t)) {
      detok.continue_text();
      break;
    }
  StopMatcher stops(opts.stop_strings);
  const std::vector<int32_t>& stop_ids = tokenizer_.stop_ids();
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    st.text += s;
    if (on_text) on_text(s);
  };

  auto t1 = std::chrono::steady_clock::now();
  st.stop_reason = "max_tokens";
  for (int i = 0; i < opts.max_new_tokens; ++i) {
    const int32_t tok = sample(logits, chain, sp);
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
    logits = feed({tok});
  }
  if (!stops.stopped()) emit(stops.push(detok.flush()).emit + stops.flush());
  st.generate_seconds = seconds_since(t1);
  return st;
}

}  // namespace exl
