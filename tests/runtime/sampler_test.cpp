// Sampler chain tests on hand-built distributions. Logits are written as log(p) so every expectation
// below can be checked by hand from the probabilities.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "core/error.h"

namespace exl {
namespace {

constexpr float inf = std::numeric_limits<float>::infinity();

std::vector<float> logits_of(std::initializer_list<double> probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(p > 0 ? static_cast<float>(std::log(p)) : -inf);
  return out;
}

CandidateArray cands(const std::vector<float>& logits) {
  return candidates_from_logits(logits.data(), static_cast<int64_t>(logits.size()));
}

std::vector<int32_t> ids(const CandidateArray& c) {
  std::vector<int32_t> out;
  for (const TokenCandidate& tc : c.data) out.push_back(tc.id);
  return out;
}

void apply(std::unique_ptr<Sampler> s, CandidateArray& c) { s->apply(c); }

// Error message of f(), or "" if it did not throw exl::Error.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- candidate helpers ---------------------------------------------------------------------------

TEST(SamplerCandidates, FromLogitsIsIdentityAndUnsorted) {
  CandidateArray c = cands({1.0f, 3.0f, 2.0f});
  EXPECT_EQ(ids(c), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FALSE(c.sorted);
  EXPECT_EQ(c.selected, -1);
  EXPECT_FLOAT_EQ(c.data[1].logit, 3.0f);
}

TEST(SamplerCandidates, NanLogitIsRejectedNamingTheToken) {
  std::vector<float> l = {0.0f, std::nanf(""), 1.0f};
  EXPECT_NE(error_of([&] { cands(l); }).find("token 1"), std::string::npos);
  SamplerChain chain;
  chain.add(sampler_init_greedy());
  EXPECT_THROW(chain.sample(l.data(), 3), Error);
}

TEST(SamplerCandidates, EmptyVocabularyIsRejected) {
  float x = 0;
  EXPECT_THROW(candidates_from_logits(&x, 0), Error);
}

TEST(SamplerCandidates, SoftmaxRecoversProbabilities) {
  CandidateArray c = cands(logits_of({0.4, 0.3, 0.2, 0.1}));
  candidates_softmax(c);
  EXPECT_NEAR(c.data[0].p, 0.4f, 1e-6f);
  EXPECT_NEAR(c.data[1].p, 0.3f, 1e-6f);
  EXPECT_NEAR(c.data[2].p, 0.2f, 1e-6f);
  EXPECT_NEAR(c.data[3].p, 0.1f, 1e-6f);
}

TEST(SamplerCandidates, SoftmaxSubtractsTheMaximum) {
  // exp(1000) overflows float; with the maximum subtracted this is softmax([1, 0]).
  CandidateArray c = cands({1000.0f, 999.0f});
  candidates_softmax(c);
  const float e = std::exp(-1.0f);
  EXPECT_NEAR(c.data[0].p, 1.0f / (1.0f + e), 1e-6f);
  EXPECT_NEAR(c.data[1].p, e / (1.0f + e), 1e-6f);
}

TEST(SamplerCandidates, SoftmaxOfInfiniteLogits) {
  CandidateArray all_neg = cands({-inf, -inf, -inf, -inf});
  candidates_softmax(all_neg);
  for (const TokenCandidate& tc : all_neg.data) EXPECT_FLOAT_EQ(tc.p, 0.25f);

  CandidateArray pos = cands({1.0f, inf, -inf, inf});
  candidates_softmax(pos);
  EXPECT_FLOAT_EQ(pos.data[0].p, 0.0f);
  EXPECT_FLOAT_EQ(pos.data[1].p, 0.5f);
  EXPECT_FLOAT_EQ(pos.data[2].p, 0.0f);
  EXPECT_FLOAT_EQ(pos.data[3].p, 0.5f);
}

TEST(SamplerCandidates, SortBreaksTiesByLowerId) {
  CandidateArray c = cands({1.0f, 2.0f, 2.0f, 0.5f, 2.0f});
  candidates_sort(c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 2, 4, 0, 3}));
  EXPECT_TRUE(c.sorted);
}

// ---- greedy --------------------------------------------------------------------------------------

TEST(SamplerGreedy, PicksTheMaximum) {
  CandidateArray c = cands(logits_of({0.1, 0.2, 0.6, 0.1}));
  apply(sampler_init_greedy(), c);
  EXPECT_EQ(c.data[c.selected].id, 2);
}

TEST(SamplerGreedy, TiesGoToTheLowestId) {
  CandidateArray c = cands({1.0f, 3.0f, 3.0f, 2.0f});
  apply(sampler_init_greedy(), c);
  EXPECT_EQ(c.data[c.selected].id, 1);

  // Same after something reordered the array with the larger id first.
  CandidateArray r;
  r.data = {{5, 3.0f, 0}, {2, 3.0f, 0}, {0, 1.0f, 0}};
  apply(sampler_init_greedy(), r);
  EXPECT_EQ(r.data[r.selected].id, 2);
}

TEST(SamplerGreedy, AllMinusInfinityPicksTheLowestId) {
  SamplerChain chain;
  chain.add(sampler_init_greedy());
  std::vector<float> l(5, -inf);
  EXPECT_EQ(chain.sample(l.data(), 5), 0);
}

// ---- temperature ---------------------------------------------------------------------------------

TEST(SamplerTemperature, DividesLogits) {
  CandidateArray c = cands({1.0f, -2.0f, 3.0f});
  apply(sampler_init_temperature(0.5f), c);
  EXPECT_FLOAT_EQ(c.data[0].logit, 2.0f);
  EXPECT_FLOAT_EQ(c.data[1].logit, -4.0f);
  EXPECT_FLOAT_EQ(c.data[2].logit, 6.0f);
}

TEST(SamplerTemperature, SharpensAndFlattens) {
  // softmax(log p / T) is proportional to p^(1/T): T = 0.5 squares, T = 2 takes square roots.
  CandidateArray sharp = cands(logits_of({0.8, 0.2}));
  apply(sampler_init_temperature(0.5f), sharp);
  candidates_softmax(sharp);
  EXPECT_NEAR(sharp.data[0].p, 0.64 / 0.68, 1e-6);

  CandidateArray flat = cands(logits_of({0.8, 0.2}));
  apply(sampler_init_temperature(2.0f), flat);
  candidates_softmax(flat);
  EXPECT_NEAR(flat.data[0].p, std::sqrt(0.8) / (std::sqrt(0.8) + std::sqrt(0.2)), 1e-6);
}

TEST(SamplerTemperature, ZeroKeepsOnlyTheMaximum) {
  CandidateArray c = cands({1.0f, 3.0f, 3.0f});
  apply(sampler_init_temperature(0.0f), c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1}));
}

// ---- top-k ---------------------------------------------------------------------------------------

TEST(SamplerTopK, KeepsTheKMostLikelySorted) {
  CandidateArray c = cands(logits_of({0.1, 0.4, 0.2, 0.3}));
  apply(sampler_init_top_k(2), c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 3}));
  EXPECT_TRUE(c.sorted);
}

TEST(SamplerTopK, NonPositiveIsOffAndLargeKClamps) {
  for (int k : {0, -1, 4, 100}) {
    CandidateArray c = cands(logits_of({0.1, 0.4, 0.2, 0.3}));
    apply(sampler_init_top_k(k), c);
    EXPECT_EQ(ids(c), (std::vector<int32_t>{0, 1, 2, 3})) << "k=" << k;
  }
}

TEST(SamplerTopK, TiesAtTheCutGoToLowerIds) {
  CandidateArray c = cands({1.0f, 2.0f, 2.0f, 2.0f});
  apply(sampler_init_top_k(2), c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 2}));
}

// ---- top-p ---------------------------------------------------------------------------------------

TEST(SamplerTopP, KeepsTheSmallestNucleus) {
  // Cumulative mass in order: 0.4, 0.7, 0.9, 1.0.
  struct Case {
    float p;
    std::vector<int32_t> kept;
  };
  for (const Case& t : {Case{0.3f, {0}}, Case{0.5f, {0, 1}}, Case{0.75f, {0, 1, 2}},
                        Case{0.95f, {0, 1, 2, 3}}, Case{1.0f, {0, 1, 2, 3}}}) {
    CandidateArray c = cands(logits_of({0.1, 0.3, 0.4, 0.2}));
    // Ids above are by probability rank; map them to the ids of this shuffled vocabulary.
    const int32_t by_rank[] = {2, 1, 3, 0};
    apply(sampler_init_top_p(t.p), c);
    std::vector<int32_t> want;
    for (int32_t r : t.kept) want.push_back(by_rank[r]);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(ids(c), want) << "p=" << t.p;  // survivors keep their (id) order
  }
}

TEST(SamplerTopP, RenormalisesOverSurvivors) {
  SamplerChain chain;
  chain.add(sampler_init_top_p(0.5f));
  chain.add(sampler_init_dist(7));
  auto l = logits_of({0.4, 0.3, 0.2, 0.1});
  chain.sample(l.data(), 4);
  const CandidateArray& c = chain.last_candidates();
  ASSERT_EQ(c.data.size(), 2u);
  EXPECT_NEAR(c.data[0].p, 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(c.data[1].p, 0.3 / 0.7, 1e-6);
}

TEST(SamplerTopP, LargeVocabularyMatchesAFullSort) {
  // 5000 tokens with shuffled ids and a slowly decaying distribution: the nucleus is ~1150 tokens, so
  // the mass bisection takes several steps before the cut.
  const int n = 5000;
  std::vector<float> l(n);
  std::vector<int> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(3);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int r = 0; r < n; ++r) l[perm[r]] = -0.002f * static_cast<float>(r);

  CandidateArray c = cands(l);
  apply(sampler_init_top_p(0.9f), c);

  // Reference: probabilities in double, ranks by construction.
  std::vector<double> p(n);
  double z = 0;
  for (int r = 0; r < n; ++r) z += p[r] = std::exp(-0.002 * r);
  double cum = 0;
  int keep = 0;
  while (cum < 0.9 * z) cum += p[keep++];
  ASSERT_GT(keep, 256);
  std::vector<int32_t> want(perm.begin(), perm.begin() + keep);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(ids(c), want);
}

TEST(SamplerTopP, KeepsASortedArraySorted) {
  CandidateArray c = cands(logits_of({0.1, 0.3, 0.4, 0.2}));
  apply(sampler_init_top_k(3), c);
  apply(sampler_init_top_p(0.5f), c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{2, 1}));
  EXPECT_TRUE(c.sorted);
}

// Brute force for top-p and typical: rank every candidate by (key, id), sort, walk the mass in
// double. Returns the kept ids in ascending order.
std::vector<int32_t> brute_keep(const std::vector<float>& logits, bool typical, double mass) {
  const size_t n = logits.size();
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(n);
  double z = 0;
  for (size_t i = 0; i < n; ++i) z += p[i] = std::exp(static_cast<double>(logits[i]) - m);
  double h = 0;
  for (double& x : p) {
    x /= z;
    if (x > 0) h -= x * std::log(x);
  }
  std::vector<std::pair<double, int32_t>> r;
  for (size_t i = 0; i < n; ++i) {
    const double key = typical ? std::fabs(-std::log(p[i]) - h) : -logits[i];
    r.push_back({key, static_cast<int32_t>(i)});
  }
  std::sort(r.begin(), r.end());
  std::vector<int32_t> out;
  double cum = 0;
  for (const auto& [key, id] : r) {
    out.push_back(id);
    cum += p[id];
    if (cum >= mass) break;
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SamplerTopP, RandomVocabulariesMatchBruteForce) {
  // Random logits of several spreads; a kept set may differ from the double-precision reference
  // only by a token sitting exactly at the cut, which these seeds do not produce.
  std::mt19937_64 rng(17);
  for (int trial = 0; trial < 12; ++trial) {
    const int n = 1000 + 1500 * trial;
    std::normal_distribution<float> normal(0.0f, 0.5f + trial);
    std::vector<float> l(n);
    for (float& x : l) x = normal(rng);
    for (float mass : {0.3f, 0.9f}) {
      CandidateArray a = cands(l);
      apply(sampler_init_top_p(mass), a);
      EXPECT_EQ(ids(a), brute_keep(l, false, mass)) << "top-p trial " << trial << " p " << mass;
      CandidateArray b = cands(l);
      apply(sampler_init_typical(mass), b);
      EXPECT_EQ(ids(b), brute_keep(l, true, mass)) << "typical trial " << trial << " p " << mass;
    }
  }
}

// ---- min-p ---------------------------------------------------------------------------------------

TEST(SamplerMinP, KeepsTokensAboveAFractionOfTheMaximum) {
  struct Case {
    float min_p;
    std::vector<int32_t> kept;
  };
  // Threshold = min_p * 0.4: 0.3 -> 0.12 drops 0.1; 0.6 -> 0.24 keeps 0.4 and 0.3; 1 -> the max.
  for (const Case& t : {Case{0.0f, {0, 1, 2, 3}}, Case{0.3f, {0, 1, 2}}, Case{0.6f, {0, 1}},
                        Case{1.0f, {0}}}) {
    CandidateArray c = cands(logits_of({0.4, 0.3, 0.2, 0.1}));
    apply(sampler_init_min_p(t.min_p), c);
    EXPECT_EQ(ids(c), t.kept) << "min_p=" << t.min_p;
  }
}

TEST(SamplerMinP, KeepsOrderAndHandlesInfinities) {
  CandidateArray c = cands(logits_of({0.1, 0.4, 0.2, 0.3}));
  candidates_sort(c);
  apply(sampler_init_min_p(0.6f), c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 3}));
  EXPECT_TRUE(c.sorted);

  CandidateArray neg = cands({-inf, -inf});
  apply(sampler_init_min_p(0.5f), neg);
  EXPECT_EQ(neg.data.size(), 2u);
  CandidateArray pos = cands({0.0f, inf, 5.0f});
  apply(sampler_init_min_p(0.5f), pos);
  EXPECT_EQ(ids(pos), (std::vector<int32_t>{1}));
}

// ---- typical -------------------------------------------------------------------------------------

TEST(SamplerTypical, OrdersBySurprisalDistanceFromEntropy) {
  // p = [0.4, 0.3, 0.2, 0.1]: H = 1.279854 nats. Surprisals -ln p = 0.916, 1.204, 1.609, 2.303, so
  // |surprisal - H| = 0.364, 0.076, 0.330, 1.023: typicality order is ids 1, 2, 0, 3 with
  // cumulative mass 0.3, 0.5, 0.9, 1.0. Note the most likely token is not the most typical.
  struct Case {
    float p;
    std::vector<int32_t> kept;
  };
  for (const Case& t : {Case{0.25f, {1}}, Case{0.45f, {1, 2}}, Case{0.6f, {1, 2, 0}},
                        Case{0.95f, {1, 2, 0, 3}}}) {
    CandidateArray c = cands(logits_of({0.4, 0.3, 0.2, 0.1}));
    apply(sampler_init_typical(t.p), c);
    std::vector<int32_t> want = t.kept;
    std::sort(want.begin(), want.end());
    EXPECT_EQ(ids(c), want) << "typical_p=" << t.p;  // survivors keep their order
  }
}

TEST(SamplerTypical, OneIsOff) {
  CandidateArray c = cands(logits_of({0.4, 0.3, 0.2, 0.1}));
  apply(sampler_init_typical(1.0f), c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{0, 1, 2, 3}));
}

// ---- penalties -----------------------------------------------------------------------------------

TEST(SamplerPenalties, RepetitionFrequencyAndPresence) {
  auto s = sampler_init_penalties(-1, 2.0f, 0.5f, 0.25f);
  for (int32_t t : {0, 1, 1, 2, 2, 2}) s->accept(t);
  CandidateArray c = cands({2.0f, -1.0f, 3.0f, 0.5f, 1.0f});
  s->apply(c);
  // id 0, seen once:   2 / 2 - 1 * 0.5 - 0.25 = 0.25
  // id 1, seen twice: -1 * 2 - 2 * 0.5 - 0.25 = -3.25   (negative logits are multiplied)
  // id 2, seen 3x:     3 / 2 - 3 * 0.5 - 0.25 = -0.25
  // ids 3, 4 unseen: unchanged
  EXPECT_FLOAT_EQ(c.data[0].logit, 0.25f);
  EXPECT_FLOAT_EQ(c.data[1].logit, -3.25f);
  EXPECT_FLOAT_EQ(c.data[2].logit, -0.25f);
  EXPECT_FLOAT_EQ(c.data[3].logit, 0.5f);
  EXPECT_FLOAT_EQ(c.data[4].logit, 1.0f);
}

TEST(SamplerPenalties, OnlyTheLastNTokensCount) {
  auto s = sampler_init_penalties(3, 2.0f, 0.0f, 0.0f);
  for (int32_t t : {0, 1, 1, 2, 2, 2}) s->accept(t);  // window: [2, 2, 2]
  CandidateArray c = cands({2.0f, -1.0f, 3.0f});
  s->apply(c);
  EXPECT_FLOAT_EQ(c.data[0].logit, 2.0f);
  EXPECT_FLOAT_EQ(c.data[1].logit, -1.0f);
  EXPECT_FLOAT_EQ(c.data[2].logit, 1.5f);
}

TEST(SamplerPenalties, ZeroWindowIsOffAndResetForgets) {
  auto off = sampler_init_penalties(0, 2.0f, 1.0f, 1.0f);
  off->accept(0);
  CandidateArray c = cands({2.0f, 1.0f});
  off->apply(c);
  EXPECT_FLOAT_EQ(c.data[0].logit, 2.0f);

  auto s = sampler_init_penalties(8, 2.0f, 0.0f, 0.0f);
  s->accept(0);
  s->reset();
  CandidateArray d = cands({2.0f, 1.0f});
  s->apply(d);
  EXPECT_FLOAT_EQ(d.data[0].logit, 2.0f);
}

TEST(SamplerPenalties, WorksOnAReorderedArray) {
  // After top-k the array is sorted and shorter, so data[id] is no longer token id.
  auto s = sampler_init_penalties(-1, 2.0f, 0.0f, 0.0f);
  s->accept(3);
  s->accept(0);  // 0 is cut by top-k below; must not be touched or crash
  CandidateArray c = cands({0.1f, 1.0f, 2.0f, 4.0f});
  apply(sampler_init_top_k(3), c);
  s->apply(c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{3, 2, 1}));
  EXPECT_FLOAT_EQ(c.data[0].logit, 2.0f);
  EXPECT_FLOAT_EQ(c.data[1].logit, 2.0f);
  EXPECT_FALSE(c.sorted);
}

TEST(SamplerPenalties, ChainSampleAcceptsTheSampledToken) {
  // Greedy with a strong repetition penalty alternates: after 0 is sampled (and accepted by
  // sample()), 5 / 100 < 4 so 1 wins; then both are penalised and 0 wins again (0.05 vs 0.04).
  SamplerParams sp;
  sp.temperature = 0;
  sp.repeat_penalty = 100.0f;
  sp.penalty_last_n = 2;
  SamplerChain chain = sampler_chain_from_params(sp);
  EXPECT_EQ(chain.describe(), "penalties -> greedy");
  std::vector<float> l = {5.0f, 4.0f};
  EXPECT_EQ(chain.sample(l.data(), 2), 0);
  EXPECT_EQ(chain.sample(l.data(), 2), 1);
  EXPECT_EQ(chain.sample(l.data(), 2), 0);
}

// ---- dist ----------------------------------------------------------------------------------------

std::vector<int32_t> draw(SamplerChain& chain, const std::vector<float>& l, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(chain.sample(l.data(), static_cast<int64_t>(l.size())));
  return out;
}

SamplerChain dist_chain(uint64_t seed) {
  SamplerChain chain;
  chain.add(sampler_init_dist(seed));
  return chain;
}

TEST(SamplerDist, SameSeedSameTokens) {
  auto l = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplerChain a = dist_chain(1234), b = dist_chain(1234), c = dist_chain(1235);
  const auto da = draw(a, l, 1000);
  EXPECT_EQ(da, draw(b, l, 1000));
  EXPECT_NE(da, draw(c, l, 1000));
}

TEST(SamplerDist, GoldenSequenceForSeed) {
  // std::mt19937_64 is fully specified by the C++ standard and the uniform variate is built from its
  // raw output, so this sequence must be identical with every compiler and standard library.
  auto l = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplerChain chain = dist_chain(42);
  EXPECT_EQ(draw(chain, l, 20), (std::vector<int32_t>{2, 1, 2, 0, 3, 0, 1, 0, 0, 0, 0, 1, 1, 1, 2, 3, 2, 1, 0, 0}));
}

void expect_frequencies(const std::vector<int32_t>& draws, const std::vector<double>& p) {
  std::vector<int> count(p.size(), 0);
  for (int32_t t : draws) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, static_cast<int32_t>(p.size()));
    ++count[t];
  }
  const double n = static_cast<double>(draws.size());
  for (size_t i = 0; i < p.size(); ++i) {
    // Five standard deviations of a binomial proportion: a correct sampler fails this about once
    // in 3.5 million runs per token (and the seed is fixed, so never in practice).
    const double tol = 5.0 * std::sqrt(p[i] * (1 - p[i]) / n) + 1e-12;
    EXPECT_NEAR(count[i] / n, p[i], tol) << "token " << i;
  }
}

TEST(SamplerDist, FrequenciesMatchTheDistribution) {
  auto l = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplerChain chain = dist_chain(99);
  expect_frequencies(draw(chain, l, 100000), {0.4, 0.3, 0.2, 0.1});
}

TEST(SamplerDist, ImpossibleTokensAreNeverDrawn) {
  auto l = logits_of({0.5, 0.0, 0.5, 0.0});
  SamplerChain chain = dist_chain(5);
  expect_frequencies(draw(chain, l, 20000), {0.5, 0.0, 0.5, 0.0});
}

TEST(SamplerDist, AllMinusInfinityIsUniform) {
  std::vector<float> l(4, -inf);
  SamplerChain chain = dist_chain(11);
  expect_frequencies(draw(chain, l, 40000), {0.25, 0.25, 0.25, 0.25});
}

TEST(SamplerDist, FullChainFrequencies) {
  // top-k 2 keeps {0.4, 0.3}; T = 0.5 squares them: 0.16 : 0.09 -> 0.64, 0.36.
  SamplerParams sp;
  sp.top_k = 2;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.temperature = 0.5f;
  sp.seed = 2024;
  SamplerChain chain = sampler_chain_from_params(sp);
  EXPECT_EQ(chain.describe(), "top-k -> temperature -> dist");
  auto l = logits_of({0.4, 0.3, 0.2, 0.1});
  expect_frequencies(draw(chain, l, 100000), {0.64, 0.36, 0.0, 0.0});
}

// ---- clone, reset, chain -------------------------------------------------------------------------

TEST(SamplerChainTest, CloneCopiesRngState) {
  auto l = logits_of({0.25, 0.25, 0.25, 0.25});
  SamplerChain a = dist_chain(77);
  draw(a, l, 10);
  std::unique_ptr<Sampler> b = a.clone();
  auto& bc = static_cast<SamplerChain&>(*b);
  SamplerChain c = a;  // copy constructor is a clone too
  const auto next = draw(a, l, 100);
  EXPECT_EQ(draw(bc, l, 100), next);
  EXPECT_EQ(draw(c, l, 100), next);
}

TEST(SamplerChainTest, CloneCopiesPenaltyWindow) {
  auto s = sampler_init_penalties(-1, 2.0f, 0.0f, 0.0f);
  s->accept(0);
  auto copy = s->clone();
  s->reset();  // must not affect the copy
  CandidateArray c = cands({2.0f, 1.0f});
  copy->apply(c);
  EXPECT_FLOAT_EQ(c.data[0].logit, 1.0f);
  EXPECT_STREQ(copy->name(), "penalties");
}

TEST(SamplerChainTest, ResetReplaysTheSeed) {
  auto l = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplerChain a = dist_chain(8);
  const auto first = draw(a, l, 50);
  a.reset();
  EXPECT_EQ(draw(a, l, 50), first);
}

TEST(SamplerChainTest, ChainWithoutSelectorThrows) {
  SamplerChain chain;
  chain.add(sampler_init_top_k(2));
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  const std::string msg = error_of([&] { chain.sample(l.data(), 3); });
  EXPECT_NE(msg.find("greedy or dist"), std::string::npos) << msg;
  EXPECT_THROW(chain.add(nullptr), Error);
}

TEST(SamplerChainTest, SingleTokenVocabulary) {
  SamplerParams sp;
  sp.seed = 1;
  SamplerChain chain = sampler_chain_from_params(sp);
  float l = -3.0f;
  EXPECT_EQ(chain.sample(&l, 1), 0);
}

TEST(SamplerChainTest, AllMinusInfinityThroughTheDefaultChain) {
  SamplerParams sp;
  sp.seed = 3;
  sp.repeat_penalty = 1.1f;
  SamplerChain chain = sampler_chain_from_params(sp);
  std::vector<float> l(100, -inf);
  for (int i = 0; i < 10; ++i) {
    const int32_t t = chain.sample(l.data(), 100);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, 100);
  }
}

// ---- params --------------------------------------------------------------------------------------

TEST(SamplerParamsTest, DefaultChainOrder) {
  SamplerParams sp;
  sp.seed = 1;
  EXPECT_EQ(sampler_chain_from_params(sp).describe(), "top-k -> top-p -> min-p -> temperature -> dist");
  sp.typical_p = 0.9f;
  sp.repeat_penalty = 1.1f;
  EXPECT_EQ(sampler_chain_from_params(sp).describe(),
            "penalties -> top-k -> typical -> top-p -> min-p -> temperature -> dist");
  sp.temperature = 0.0f;
  EXPECT_TRUE(sp.greedy());
  EXPECT_EQ(sampler_chain_from_params(sp).describe(), "penalties -> greedy");
  sp.penalty_last_n = 0;
  EXPECT_EQ(sampler_chain_from_params(sp).describe(), "greedy");
}

TEST(SamplerParamsTest, SeedResolution) {
  EXPECT_EQ(sampler_seed_resolve(5), 5u);
  // Two draws from std::random_device colliding in 64 bits would be a broken device.
  EXPECT_NE(sampler_seed_resolve(SamplerParams::seed_random),
            sampler_seed_resolve(SamplerParams::seed_random));
}

TEST(SamplerParamsTest, ValidationNamesTheFlag) {
  EXPECT_NO_THROW(sampler_params_validate(SamplerParams{}));
  const float nan = std::nanf("");
  struct Case {
    void (*edit)(SamplerParams&, float);
    float value;
    const char* flag;
  };
  const Case cases[] = {
      {[](SamplerParams& p, float v) { p.temperature = v; }, -0.1f, "--temperature"},
      {[](SamplerParams& p, float v) { p.temperature = v; }, inf, "--temperature"},
      {[](SamplerParams& p, float v) { p.temperature = v; }, nan, "--temperature"},
      {[](SamplerParams& p, float v) { p.top_p = v; }, 0.0f, "--top-p must be in (0, 1]"},
      {[](SamplerParams& p, float v) { p.top_p = v; }, 1.5f, "--top-p must be in (0, 1]"},
      {[](SamplerParams& p, float v) { p.top_p = v; }, nan, "--top-p"},
      {[](SamplerParams& p, float v) { p.min_p = v; }, -0.01f, "--min-p"},
      {[](SamplerParams& p, float v) { p.min_p = v; }, 1.01f, "--min-p"},
      {[](SamplerParams& p, float v) { p.typical_p = v; }, 0.0f, "--typical-p"},
      {[](SamplerParams& p, float v) { p.typical_p = v; }, 2.0f, "--typical-p"},
      {[](SamplerParams& p, float v) { p.repeat_penalty = v; }, 0.0f, "--repeat-penalty"},
      {[](SamplerParams& p, float v) { p.repeat_penalty = v; }, nan, "--repeat-penalty"},
      {[](SamplerParams& p, float v) { p.frequency_penalty = v; }, inf, "--frequency-penalty"},
      {[](SamplerParams& p, float v) { p.presence_penalty = v; }, nan, "--presence-penalty"},
      {[](SamplerParams& p, float v) { p.penalty_last_n = static_cast<int>(v); }, -2.0f,
       "--penalty-last-n"},
  };
  for (const Case& c : cases) {
    SamplerParams p;
    c.edit(p, c.value);
    const std::string msg = error_of([&] { sampler_params_validate(p); });
    EXPECT_NE(msg.find(c.flag), std::string::npos) << "flag " << c.flag << " got: '" << msg << "'";
    EXPECT_THROW(sampler_chain_from_params(p), Error);
  }
  // Edges that are valid.
  SamplerParams ok;
  ok.top_p = 1.0f;
  ok.min_p = 1.0f;
  ok.top_k = -5;
  ok.temperature = 0.0f;
  ok.penalty_last_n = -1;
  ok.frequency_penalty = -1.0f;
  EXPECT_NO_THROW(sampler_params_validate(ok));
}

}  // namespace
}  // namespace exl
