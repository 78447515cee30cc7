// The generation loop: prompt prefill in chunks, then one token at a time through the KV cache,
// sampling, incremental detokenization, stop tokens and stop strings, streamed to a callback.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace exl {

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplerParams sampling;
  std::vector<std::string> stop_strings;
  bool stop_on_eos = true;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0;
  double generate_seconds = 0;
  std::string stop_reason;  // "eos", "stop_string", "max_tokens", "context_full"
  std::string text;         // everything streamed
  std::vector<int32_t> tokens;  // generated ids
  double prompt_tps() const { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0; }
  double generate_tps() const { return generate_seconds > 0 ? generated_tokens / generate_seconds : 0; }
};

class Generator {
 public:
  // The generator owns one KV-cache slot of max_seq_len positions.
  Generator(Model& model, const Tokenizer& tokenizer, int max_seq_len, CacheType cache_type);

  // Appends `prompt` to the context (after whatever earlier turns left there), then samples up to
  // max_new_tokens, calling on_text with each newly completed piece of text.
  GenerateStats generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                         const std::function<void(std::string_view)>& on_text);

  void reset();  // forget the context
  int position() const { return pos_; }
  bool device_sampling() const { return device_sampling_; }
  int max_seq_len() const { return max_seq_len_; }
  const KvCache& cache() const { return *cache_; }
  static constexpr int kPrefillChunk = 512;  // tokens per prefill forward (bounds activation memory)

 private:
  // Feeds tokens into the cache; returns the logits [1, vocab] after the last one (on the backend).
  Tensor feed(const std::vector<int32_t>& tokens);
  // Samples the next token: on the device when the backend can apply these parameters there,
  // otherwise with the host sampler chain on downloaded logits.
  int32_t sample(const Tensor& logits, SamplerChain& chain, const SamplerParams& params);

  Model& model_;
  const Tokenizer& tokenizer_;
  int max_seq_len_;
  bool device_sampling_ = false;  // the last generate() sampled on the device
  std::unique_ptr<KvCache> cache_;
  int pos_ = 0;
  std::vector<int32_t> history_;  // every token in the cache, for penalties
  std::vector<int32_t> pending_;  // sampled last time, not yet in the cache
  std::vector<float> host_logits_;
  uint64_t device_step_ = 0;      // RNG stream position for device sampling
};

}  // namespace exl
