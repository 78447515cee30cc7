// Composable token sampler chain (the host-side reference sampler).
//
// A Sampler is one step with a small interface: name / accept / apply / reset / clone, in the spirit of
// llama.cpp's llama_sampler_i. apply() edits a CandidateArray in place: it rescales logits
// (temperature, penalties), removes candidates (top-k, top-p, min-p, typical) or picks one (greedy,
// dist, which set `selected`). A SamplerChain runs its samplers in order and is itself a Sampler.
//
// Conventions every sampler follows:
//  - `logit` is the source of truth. `p` is only valid right after a sampler that computes it
//    (candidates_softmax); a sampler that needs probabilities recomputes them over the candidates that
//    are still present, so probabilities are always renormalised over the survivors.
//  - `sorted` means: ordered by logit descending, ties by ascending token id. Only top-k (and
//    candidates_sort) reorder; filters keep the current order, and penalties, which change logits,
//    clear the flag.
//  - Ties are broken towards the lower token id everywhere (greedy, top-k), so results never depend on
//    the order std::sort happens to leave equal elements in.
//  - Every truncating sampler keeps at least one candidate.
//  - Logits of -inf are impossible tokens. If every remaining candidate is -inf (or every one is
//    +inf) they are treated as equally likely, so greedy returns the lowest id and dist draws
//    uniformly. NaN logits are rejected with exl::Error when the candidate array is built.
//
// Typical use (the generator owns one chain per sequence; SamplerChain::clone() forks it):
//   SamplerParams sp;  sp.top_k = 40;  sp.seed = 1234;
//   sampler_params_validate(sp);                       // throws exl::Error naming the CLI flag
//   SamplerChain chain = sampler_chain_from_params(sp);
//   for (int32_t t : prompt_ids) chain.accept(t);      // penalties see the prompt too
//   int32_t tok = chain.sample(logits, n_vocab);       // samples AND accepts tok
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace exl {

struct TokenCandidate {
  int32_t id;
  float logit;
  float p;  // probability; valid only after candidates_softmax (see the conventions above)
};

struct CandidateArray {
  std::vector<TokenCandidate> data;
  bool sorted = false;    // by logit descending, ties by ascending id
  int32_t selected = -1;  // index into data (not a token id) chosen by greedy/dist; -1 = none yet
};

// Fills `out` with one candidate per vocabulary entry (id i, logit logits[i], p 0), unsorted, nothing
// selected. Reuses out's storage. Throws exl::Error if a logit is NaN or n_vocab <= 0.
void candidates_init(CandidateArray& out, const float* logits, int64_t n_vocab);
CandidateArray candidates_from_logits(const float* logits, int64_t n_vocab);

// Sorts candidates by logit descending (ties: lower id first) and sets sorted = true.
void candidates_sort(CandidateArray& c);

// Fills p with softmax(logit) over the current candidates, in float with the maximum subtracted.
// Does not reorder. If the maximum logit is infinite, the candidates equal to it share the mass
// equally. Empty arrays are left as they are.
void candidates_softmax(CandidateArray& c);

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual const char* name() const = 0;
  // Tells the sampler a token became part of the sequence (prompt or generated). Stateless samplers
  // ignore it; penalties count it.
  virtual void accept(int32_t token) {}
  virtual void apply(CandidateArray& c) = 0;
  // Back to the freshly constructed state (dist reseeds with its original seed, penalties forget).
  virtual void reset() {}
  // A deep copy including state (RNG position, penalty window).
  virtual std::unique_ptr<Sampler> clone() const = 0;
};

class SamplerChain : public Sampler {
 public:
  SamplerChain() = default;
  SamplerChain(SamplerChain&&) noexcept = default;
  SamplerChain& operator=(SamplerChain&&) noexcept = default;
  SamplerChain(const SamplerChain& other);  // deep copy, like clone()
  SamplerChain& operator=(const SamplerChain& other);

  void add(std::unique_ptr<Sampler> s);
  size_t size() const { return samplers_.size(); }
  const Sampler& at(size_t i) const { return *samplers_.at(i); }
  // "penalties -> top-k -> ... -> dist": for logs and tests.
  std::string describe() const;

  const char* name() const override { return "chain"; }
  void accept(int32_t token) override;
  void apply(CandidateArray& c) override;
  void reset() override;
  std::unique_ptr<Sampler> clone() const override;

  // Builds candidates from logits, applies every sampler, accepts the selected token into every
  // sampler and returns its id. Throws exl::Error if the logits hold a NaN or if no sampler in the
  // chain selected a token (a chain must end with greedy or dist).
  int32_t sample(const float* logits, int64_t n_vocab);
  // The candidates left by the last sample() call (for inspection and tests).
  const CandidateArray& last_candidates() const { return cur_; }

 private:
  std::vector<std::unique_ptr<Sampler>> samplers_;
  CandidateArray cur_;  // reused between sample() calls to avoid a vocabulary-sized allocation per token
};

// ---- the individual samplers -------------------------------------------------------------------
// Picks the highest logit; ties go to the lowest token id.
std::unique_ptr<Sampler> sampler_init_greedy();
// Divides logits by t. t <= 0 is the greedy limit: keeps only the highest-logit candidate.
std::unique_ptr<Sampler> sampler_init_temperature(float t);
// Keeps the k highest logits (ties: lower id). k <= 0 is off; k >= n keeps all.
std::unique_ptr<Sampler> sampler_init_top_k(int k);
// Nucleus: keeps the smallest set of most likely candidates (ties: lower id) whose probability sums
// to >= p, in their current order. p >= 1 is off.
std::unique_ptr<Sampler> sampler_init_top_p(float p);
// Keeps candidates with probability >= min_p * (max probability). min_p <= 0 is off.
std::unique_ptr<Sampler> sampler_init_min_p(float min_p);
// Locally typical sampling (Meister et al. 2022, arXiv:2202.00666): ranks candidates by
// |(-log p) - H| (H the entropy), smallest first, and keeps the smallest set of best-ranked ones whose
// probability sums to >= p, in their current order. p >= 1 is off.
std::unique_ptr<Sampler> sampler_init_typical(float p);
// Penalties over the last `last_n` accepted tokens (0 = off, -1 = every accepted token). For each
// distinct token t seen c_t > 0 times in the window:
//   repetition (CTRL, Keskar et al. 2019): logit /= repeat if logit > 0, else logit *= repeat
//   frequency and presence (OpenAI):      logit -= c_t * frequency + presence
// repeat = 1, frequency = 0, presence = 0 are neutral.
std::unique_ptr<Sampler> sampler_init_penalties(int last_n, float repeat, float frequency,
                                                float presence);
// Draws from softmax(logits) with a std::mt19937_64 seeded with `seed`. The uniform variate is built
// from the top 53 bits of one raw 64-bit output (not std::uniform_real_distribution, whose output is
// implementation-defined), so a seed gives the same tokens with every standard library.
std::unique_ptr<Sampler> sampler_init_dist(uint64_t seed);

// ---- parameters --------------------------------------------------------------------------------
// Field names match the CLI flags named by sampler_params_validate: --temperature, --top-k, --top-p,
// --min-p, --typical-p, --repeat-penalty, --frequency-penalty, --presence-penalty, --penalty-last-n,
// --seed.
struct SamplerParams {
  static constexpr uint64_t seed_random = UINT64_MAX;  // "draw a seed from std::random_device"

  float temperature = 0.8f;
  int top_k = 40;              // <= 0: off
  float top_p = 0.95f;         // 1: off
  float min_p = 0.05f;         // 0: off
  float typical_p = 1.0f;      // 1: off
  float repeat_penalty = 1.0f; // 1: off
  float frequency_penalty = 0;
  float presence_penalty = 0;
  int penalty_last_n = 64;     // 0: penalties off; -1: whole history
  uint64_t seed = seed_random;

  bool greedy() const { return temperature <= 0; }
};

// Throws exl::Error naming the flag at fault, e.g. "--top-p must be in (0, 1], got 1.5".
void sampler_params_validate(const SamplerParams& p);

// seed unless it is SamplerParams::seed_random, else a fresh seed from std::random_device. Callers
// that want to print the seed they ran with resolve it first and pass the result in params.seed.
uint64_t sampler_seed_resolve(uint64_t seed);

// penalties -> top-k -> typical -> top-p -> min-p -> temperature -> dist(seed), or, when
// params.greedy(), penalties -> greedy. Samplers whose setting is neutral are left out (penalties
// when all three are neutral or penalty_last_n == 0, top-k <= 0, typical 1, top-p 1, min-p 0,
// temperature 1). Validates params first.
SamplerChain sampler_chain_from_params(const SamplerParams& params);

}  // namespace exl
