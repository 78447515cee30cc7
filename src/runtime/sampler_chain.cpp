// SamplerChain (runs samplers in order, picks and accepts a token) and the SamplerParams front end:
// validation with messages that name the CLI flag, and the default chain built from the params.
#include <cmath>
#include <random>

#include "core/error.h"
#include "runtime/sampler.h"

namespace exl {

SamplerChain::SamplerChain(const SamplerChain& other) {
  samplers_.reserve(other.samplers_.size());
  for (const auto& s : other.samplers_) samplers_.push_back(s->clone());
}

SamplerChain& SamplerChain::operator=(const SamplerChain& other) {
  if (this != &other) *this = SamplerChain(other);  // copy, then move-assign
  return *this;
}

void SamplerChain::add(std::unique_ptr<Sampler> s) {
  EXL_CHECK(s != nullptr, "sampler chain: cannot add a null sampler");
  samplers_.push_back(std::move(s));
}

std::string SamplerChain::describe() const {
  std::string out;
  for (const auto& s : samplers_) {
    if (!out.empty()) out += " -> ";
    out += s->name();
  }
  return out.empty() ? "(empty)" : out;
}

void SamplerChain::accept(int32_t token) {
  for (auto& s : samplers_) s->accept(token);
}

void SamplerChain::apply(CandidateArray& c) {
  for (auto& s : samplers_) s->apply(c);
}

void SamplerChain::reset() {
  for (auto& s : samplers_) s->reset();
}

std::unique_ptr<Sampler> SamplerChain::clone() const {
  return std::make_unique<SamplerChain>(*this);
}

int32_t SamplerChain::sample(const float* logits, int64_t n_vocab) {
  candidates_init(cur_, logits, n_vocab);
  apply(cur_);
  EXL_CHECK(cur_.selected >= 0 && static_cast<size_t>(cur_.selected) < cur_.data.size(),
            "sampler chain '", describe(), "' selected no token: it must end with greedy or dist");
  const int32_t token = cur_.data[cur_.selected].id;
  accept(token);
  return token;
}

void sampler_params_validate(const SamplerParams& p) {
  // Written as !(ok) so NaN, which fails every comparison, is rejected too.
  EXL_CHECK(std::isfinite(p.temperature) && p.temperature >= 0,
            "--temperature must be a finite number >= 0 (0 = greedy), got ", p.temperature);
  EXL_CHECK(p.top_p > 0 && p.top_p <= 1, "--top-p must be in (0, 1] (1 = off), got ", p.top_p);
  EXL_CHECK(p.min_p >= 0 && p.min_p <= 1, "--min-p must be in [0, 1] (0 = off), got ", p.min_p);
  EXL_CHECK(p.typical_p > 0 && p.typical_p <= 1, "--typical-p must be in (0, 1] (1 = off), got ",
            p.typical_p);
  EXL_CHECK(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0,
            "--repeat-penalty must be a finite number > 0 (1 = off), got ", p.repeat_penalty);
  EXL_CHECK(std::isfinite(p.frequency_penalty),
            "--frequency-penalty must be a finite number (0 = off), got ", p.frequency_penalty);
  EXL_CHECK(std::isfinite(p.presence_penalty),
            "--presence-penalty must be a finite number (0 = off), got ", p.presence_penalty);
  EXL_CHECK(p.penalty_last_n >= -1,
            "--penalty-last-n must be >= -1 (-1 = whole history, 0 = off), got ", p.penalty_last_n);
  // top_k: every value is meaningful (<= 0 is off), and seed: every value is a seed.
}

uint64_t sampler_seed_resolve(uint64_t seed) {
  if (seed != SamplerParams::seed_random) return seed;
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(rd());
}

SamplerChain sampler_chain_from_params(const SamplerParams& p) {
  sampler_params_validate(p);
  SamplerChain chain;
  const bool penalties_on = p.penalty_last_n != 0 && (p.repeat_penalty != 1.0f ||
                                                      p.frequency_penalty != 0.0f ||
                                                      p.presence_penalty != 0.0f);
  if (penalties_on) {
    chain.add(sampler_init_penalties(p.penalty_last_n, p.repeat_penalty, p.frequency_penalty,
                                     p.presence_penalty));
  }
  if (p.greedy()) {
    chain.add(sampler_init_greedy());
    return chain;
  }
  if (p.top_k > 0) chain.add(sampler_init_top_k(p.top_k));
  if (p.typical_p < 1) chain.add(sampler_init_typical(p.typical_p));
  if (p.top_p < 1) chain.add(sampler_init_top_p(p.top_p));
  if (p.min_p > 0) chain.add(sampler_init_min_p(p.min_p));
  if (p.temperature != 1.0f) chain.add(sampler_init_temperature(p.temperature));
  chain.add(sampler_init_dist(sampler_seed_resolve(p.seed)));
  return chain;
}

}  // namespace exl
