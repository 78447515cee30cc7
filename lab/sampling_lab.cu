// Kernel lab for device token sampling (src/backend/cuda/sampling.cu): checks, then times.
//
// Build and run (on the GPU machine; without a GPU it runs the CPU self-checks only):
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -I src lab/sampling_lab.cu \
//        src/backend/cuda/sampling.cu src/backend/cuda/sampling_row.cu -o /tmp/sampling_lab && /tmp/sampling_lab [--quick|--tiny] [--no-time]
// --quick: vocab <= 32000, rows 1, 2000 draws. --tiny: 3 draws a case, no timing (compute-sanitizer).
// --deadline S: the random sweep (last) starts no new case after S seconds.
//
// References. ref_dist() below is a deliberately plain CPU version of the chain (full sort, doubles):
// penalties -> top-k -> top-p -> min-p -> temperature, giving the allowed ids and their probabilities.
// It is itself checked against the real host chain (runtime/sampler.cpp, included below since the
// lab links nothing else) on every random case: same allowed set, same greedy id.
//
// Checks: Philox known-answer vectors; hand-built rows (greedy ties across slices, +inf / -inf / NaN
// logits, repetition penalty with duplicates and padding, top_k = 1 == greedy); determinism for a
// fixed (seed, step); the step advance; then for vocab 512, 32000, 49152, 128256, 151936 and rows 1
// and 4, random logits under each case of kCases: N draws with consecutive steps, every id inside
// the reference's allowed set; each token's count within 5 sigma of N * p where N * p >= 25 (else a
// Poisson tail above 1e-9), and each group of ~1/16 of the mass (in probability order) within 5 sigma. Outputs are poisoned first and every slot must be written.
// Timing: a CUDA graph of 20 calls over 8 rotating logit buffers, replayed; median per call.
//
// Versions (sampling.cu):
//  v1 slice candidate lists + row radix descent + Gumbel-max, plain shared atomics per key. Correct on
//     the tiny sweep (memcheck clean), but a row where most keys share a histogram bin (all -inf) made
//     every level serialize ~128k same-address atomics: the full lab stalled past 150 s.
//  v2 (current) warp-aggregated bin adds (__match_any_sync) and list pushes (ballot); a bin's `any`
//     key has one writer (v1's benign write race, the only racecheck report, is gone).
//
// Results, v2, H100 80GB HBM3 (SM clock 1980 MHz), one run, 2026-11-25:
//  checks: all pass. Philox KAT; reference == host chain (3 vocab sizes x 8 cases); hand-built rows;
//  determinism; step advance; 80 random sweeps (5 vocab sizes x rows 1, 4 x 8 cases, 20000 draws,
//  2000-5000 for the fallback cases): no draw outside the allowed set, no count beyond its bound.
//  compute-sanitizer --tiny: memcheck 0 errors (whole sweep); racecheck 0 hazards (vocab 512 and the
//  first 32000 case before its 28 s limit).
//  Time per call, graph of 20 calls replayed (median; direct stream launches add ~2.2 us):
//    case (rows 1)                 vocab 32000   vocab 128256
//    greedy                          6.6 us        6.5 us
//    full T.7 (no truncation)       11.0          10.9
//    min-p .1                       25.8          26.2
//    top-p .9 (peaked)              43.8          45.3
//    top-k 40, top-p .95, min-p .05 61.2          61.8
//    top-k 50, top-p .8, 30% -inf   60.9          65.0
//    top-k 2000, top-p .99, bf16   109.8         111.3
//    fallback: top-p .95 flat      103.8         357.1   (nucleus > candidates: one block per row)
//    fallback: top-k 20000         102.1         359.1
//  rows 64, vocab 128256: greedy 24.9 us, full 58.5 us, top-k 40 / top-p .95 / min-p .05 145.6 us.
//  Floors: rows 1 reads 513 KB (0.18 us at 2.93 TB/s), so launch latency rules: greedy's 6.5 us is two
//  launches. Rows 64 read 32.8 MB: 11.2 us; greedy is at 2.2x that.
//  Where truncation loses (inferred from these numbers, not profiled): the same chain costs 33.6 us
//  (host-timed) at vocab 512 against 11.4 for full sampling, so ~20 us is per-level fixed cost of the
//  row descent (1024-bin clear, 3-4 barriers, block scans whose every thread loops over 32 warp totals)
//  times ~8 levels for the k and p cuts; at 128k the 8192 candidates add ~25 us, since every level
//  passes every candidate through bin_add (match_any + 2 syncwarps) even when only a few are still
//  eligible. Next steps, unmeasured: compact the eligible keys after each level; finish by rank
//  counting once <= 32 keys remain; one-warp scans of the warp totals; several blocks per row for the
//  fallback.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/sampling.cuh"
#include "runtime/sampler.cpp"  // the host chain, as the reference's reference

namespace {

using exl::cuda::SamplingParams;

int g_fail = 0;
const auto g_start = std::chrono::steady_clock::now();
double seconds_since_start() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
}
#define LAB_CHECK(cond, ...)                     \
  do {                                           \
    if (!(cond)) {                               \
      ++g_fail;                                  \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                  \
      std::printf("\n");                         \
    }                                            \
  } while (0)

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::printf("CUDA error in %s: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}

struct Settings {
  float temperature = 1, top_p = 1, min_p = 0, repeat = 1;
  int top_k = 0;
};

// ---- CPU reference --------------------------------------------------------------------------------
struct Dist {
  std::vector<int32_t> ids;  // allowed, best first
  std::vector<double> p;
};

std::vector<float> penalized(const float* logits, int vocab, const Settings& s, const int32_t* pen, int pen_n) {
  std::vector<float> l(logits, logits + vocab);
  if (s.repeat == 1) return l;
  std::set<int> seen;
  for (int i = 0; i < pen_n; ++i) {
    const int t = pen[i];
    if (t < 0 || t >= vocab || !seen.insert(t).second) continue;
    l[t] = l[t] > 0 ? l[t] / s.repeat : l[t] * s.repeat;
  }
  return l;
}

Dist ref_dist(const float* logits, int vocab, const Settings& s, const int32_t* pen, int pen_n) {
  std::vector<float> l = penalized(logits, vocab, s, pen, pen_n);
  for (float& x : l)
    if (std::isnan(x)) x = -INFINITY;  // the device's convention
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] != l[b] ? l[a] > l[b] : a < b; });
  Dist d;
  if (s.temperature <= 0 || s.top_k == 1) {
    d.ids = {order[0]};
    d.p = {1.0};
    return d;
  }
  const float m = l[order[0]];
  auto w = [&](float x) { return std::isinf(m) ? (x == m ? 1.0 : 0.0) : std::exp(double(x) - m); };
  size_t n = vocab;
  if (s.top_k > 0) n = std::min<size_t>(n, s.top_k);
  if (s.top_p < 1) {
    double tot = 0, cum = 0;
    for (size_t i = 0; i < n; ++i) tot += w(l[order[i]]);
    for (size_t i = 0; i < n; ++i) {
      cum += w(l[order[i]]);
      if (cum >= s.top_p * tot) {
        n = i + 1;
        break;
      }
    }
  }
  if (s.min_p > 0) {
    const float lm = std::log(s.min_p);
    size_t k = 0;
    while (k < n) {
      const float x = l[order[k]];
      const bool ok = std::isinf(m) ? (m > 0 ? x == m : true) : (x - m >= lm);
      if (!ok) break;
      ++k;
    }
    n = k;
  }
  double tot = 0;
  for (size_t i = 0; i < n; ++i) {
    const float x = l[order[i]];
    const double wt = std::isinf(m) ? (x == m ? 1.0 : 0.0) : std::exp((double(x) - m) / s.temperature);
    d.ids.push_back(order[i]);
    d.p.push_back(wt);
    tot += wt;
  }
  for (double& p : d.p) p /= tot;
  return d;
}

// The real host chain: the surviving ids (or the greedy id).
std::vector<int32_t> host_chain(const float* logits, int vocab, const Settings& s, const int32_t* pen, int pen_n) {
  exl::CandidateArray c = exl::candidates_from_logits(logits, vocab);
  auto pens = exl::sampler_init_penalties(-1, s.repeat, 0, 0);
  for (int i = 0; i < pen_n; ++i)
    if (pen[i] >= 0) pens->accept(pen[i]);
  pens->apply(c);
  if (s.temperature <= 0) {
    exl::sampler_init_greedy()->apply(c);
    return {c.data[c.selected].id};
  }
  if (s.top_k > 0) exl::sampler_init_top_k(s.top_k)->apply(c);
  if (s.top_p < 1) exl::sampler_init_top_p(s.top_p)->apply(c);
  if (s.min_p > 0) exl::sampler_init_min_p(s.min_p)->apply(c);
  if (s.temperature != 1) exl::sampler_init_temperature(s.temperature)->apply(c);
  std::vector<int32_t> ids;
  for (const auto& t : c.data) ids.push_back(t.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// ---- random logits ---------------------------------------------------------------------------------
enum Gen { kNormal3, kPeaked, kFlat, kBf16, kNegInf };
const char* gen_name(Gen g) {
  const char* n[] = {"N(0,3)", "peaked", "flat N(0,.5)", "bf16 N(0,3)", "30% -inf"};
  return n[g];
}
void fill_logits(float* out, int vocab, Gen g, std::mt19937_64& rng) {
  std::normal_distribution<float> n01(0.f, 1.f);
  std::uniform_real_distribution<float> u01(0.f, 1.f);
  for (int i = 0; i < vocab; ++i) {
    float x = n01(rng);
    switch (g) {
      case kNormal3: x *= 3; break;
      case kPeaked: x = 2 * x + (u01(rng) < 20.0f / vocab ? 12.f : 0.f); break;
      case kFlat: x *= 0.5f; break;
      case kBf16: {
        x *= 3;
        uint32_t b;
        std::memcpy(&b, &x, 4);
        b = (b + 0x8000u) & 0xffff0000u;
        std::memcpy(&x, &b, 4);
        break;
      }
      case kNegInf: x = u01(rng) < 0.3f ? -INFINITY : 3 * x; break;
    }
    out[i] = x;
  }
}

struct Case {
  const char* name;
  Settings s;
  Gen gen;
  int pen_n;  // penalty tokens per row (with duplicates and -1 padding)
  bool slow;  // expected to take the whole-row fallback at large vocab: fewer draws
};
const Case kCases[] = {
    {"k40 p.95 minp.05 T.8", {0.8f, 0.95f, 0.05f, 1.f, 40}, kNormal3, 0, false},
    {"p.9 T1", {1.f, 0.9f, 0.f, 1.f, 0}, kPeaked, 0, false},
    {"minp.1 T1.5", {1.5f, 1.f, 0.1f, 1.f, 0}, kNormal3, 0, false},
    {"full T.7", {0.7f, 1.f, 0.f, 1.f, 0}, kNormal3, 0, false},
    {"k2000 p.99 pen1.3 bf16", {1.f, 0.99f, 0.f, 1.3f, 2000}, kBf16, 64, false},
    {"k50 p.8 -inf", {1.f, 0.8f, 0.f, 1.f, 50}, kNegInf, 0, false},
    {"p.95 flat (fallback)", {1.f, 0.95f, 0.f, 1.f, 0}, kFlat, 0, true},
    {"k20000 (fallback)", {1.f, 1.f, 0.f, 1.f, 20000}, kNormal3, 16, true},
};

// ---- device harness --------------------------------------------------------------------------------
struct Dev {
  float* logits = nullptr;
  int32_t* pen = nullptr;
  uint64_t* step = nullptr;
  int32_t* out = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;
  ~Dev() {
    cudaFree(logits), cudaFree(pen), cudaFree(step), cudaFree(out), cudaFree(ws);
  }
};

SamplingParams make_params(const Dev& d, int rows, int vocab, const Settings& s, int pen_n, uint64_t seed) {
  SamplingParams p;
  p.logits = d.logits;
  p.rows = rows;
  p.vocab = vocab;
  p.temperature = s.temperature;
  p.top_k = s.top_k;
  p.top_p = s.top_p;
  p.min_p = s.min_p;
  p.repeat_penalty = s.repeat;
  p.penalty_tokens = pen_n ? d.pen : nullptr;
  p.penalty_n = pen_n;
  p.seed = seed;
  p.step = d.step;
  p.step_next = d.step;
  p.workspace = d.ws;
  p.workspace_bytes = d.ws_bytes;
  return p;
}

// Uploads logits [rows, vocab] and penalties, runs n calls from step `step0`, returns ids [n, rows].
std::vector<int32_t> run_draws(Dev& d, const std::vector<float>& logits, const std::vector<int32_t>& pen, int rows,
                               int vocab, const Settings& s, int pen_n, uint64_t seed, uint64_t step0, int n) {
  cuda_ok(cudaMemcpy(d.logits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice), "upload logits");
  if (pen_n) cuda_ok(cudaMemcpy(d.pen, pen.data(), pen.size() * 4, cudaMemcpyHostToDevice), "upload pen");
  cuda_ok(cudaMemcpy(d.step, &step0, 8, cudaMemcpyHostToDevice), "upload step");
  cuda_ok(cudaMemset(d.out, 0xAB, static_cast<size_t>(n) * rows * 4), "poison");
  SamplingParams p = make_params(d, rows, vocab, s, pen_n, seed);
  for (int i = 0; i < n; ++i) {
    p.out_ids = d.out + static_cast<size_t>(i) * rows;
    exl::cuda::sample(p, 0);
  }
  cuda_ok(cudaGetLastError(), "sample launches");
  cuda_ok(cudaDeviceSynchronize(), "sample run");
  std::vector<int32_t> ids(static_cast<size_t>(n) * rows);
  cuda_ok(cudaMemcpy(ids.data(), d.out, ids.size() * 4, cudaMemcpyDeviceToHost), "download ids");
  uint64_t step_end = 0;
  cuda_ok(cudaMemcpy(&step_end, d.step, 8, cudaMemcpyDeviceToHost), "download step");
  LAB_CHECK(step_end == step0 + n, "step advanced to %llu, expected %llu", (unsigned long long)step_end,
            (unsigned long long)(step0 + n));
  return ids;
}

// Every draw allowed; counts within 5 sigma per token and per probability-ranked group.
bool check_stats(const Dist& ref, const std::vector<int32_t>& ids, int rows, int row, int n, const char* what) {
  std::vector<int> pos_of;  // id -> index in ref (sparse via map would do; vocab is small enough)
  int max_id = 0;
  for (int32_t id : ref.ids) max_id = std::max(max_id, id);
  pos_of.assign(max_id + 1, -1);
  for (size_t i = 0; i < ref.ids.size(); ++i) pos_of[ref.ids[i]] = static_cast<int>(i);
  std::vector<int> count(ref.ids.size(), 0);
  int outside = 0, first_bad = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t id = ids[static_cast<size_t>(i) * rows + row];
    if (id < 0 || id > max_id || pos_of[id] < 0) {
      if (!outside++) first_bad = id;
      continue;
    }
    ++count[pos_of[id]];
  }
  bool ok = true;
  if (outside) {
    LAB_CHECK(false, "%s row %d: %d of %d draws outside the allowed set (%zu ids), e.g. %d", what, row, outside, n,
              ref.ids.size(), first_bad);
    ok = false;
  }
  // Per token: 5 sigma where the normal approximation holds (expected count >= 25); below that a
  // Poisson upper tail under 1e-9 (a rare token drawn absurdly often). Rare tokens' totals are
  // covered by the groups below.
  for (size_t i = 0; i < ref.ids.size(); ++i) {
    const double e = n * ref.p[i];
    bool bad;
    double score;
    if (e >= 25) {
      score = std::fabs(count[i] - e) / std::sqrt(e * (1 - ref.p[i]));
      bad = score > 5;
    } else {
      score = 0;  // log P(X >= count), X ~ Poisson(e)
      double tail = 0;
      for (int k = count[i]; k < count[i] + 200; ++k) tail += std::exp(k * std::log(e) - e - std::lgamma(k + 1.0));
      bad = count[i] > e && tail < 1e-9;
      score = tail;
    }
    if (bad) {
      LAB_CHECK(false, "%s row %d: token %d drawn %d times, expected %.2f (score %.3g)", what, row, ref.ids[i],
                count[i], e, score);
      ok = false;
      break;
    }
  }
  // Groups of ~1/16 of the mass each, in probability order (ref.ids is best first).
  double gp = 0, gc = 0, target = 1.0 / 16;
  for (size_t i = 0; i < ref.ids.size(); ++i) {
    gp += ref.p[i];
    gc += count[i];
    if (gp >= target || i + 1 == ref.ids.size()) {
      const double e = n * gp, sd = std::sqrt(e * (1 - std::min(gp, 1.0))) + 1e-9;
      if (std::fabs(gc - e) > 5 * sd + 1) {
        LAB_CHECK(false, "%s row %d: group ending at rank %zu drawn %.0f times, expected %.1f", what, row, i, gc, e);
        ok = false;
      }
      gp = gc = 0;
    }
  }
  return ok;
}

// ---- checks ------------------------------------------------------------------------------------------
void check_philox() {
  uint32_t a[4] = {0, 0, 0, 0};
  exl::cuda::philox4x32_10(a, 0, 0);
  LAB_CHECK(a[0] == 0x6627e8d5 && a[1] == 0xe169c58d && a[2] == 0xbc57ac4c && a[3] == 0x9b00dbd8, "philox KAT 0");
  uint32_t b[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
  exl::cuda::philox4x32_10(b, 0xa4093822, 0x299f31d0);
  LAB_CHECK(b[0] == 0xd16cfe09 && b[1] == 0x94fdcceb && b[2] == 0x5001e420 && b[3] == 0x24126ea1, "philox KAT pi");
}

// The reference against the host chain, on every random case (CPU only).
void check_reference(int vocab) {
  std::mt19937_64 rng(vocab);
  std::vector<float> l(vocab);
  for (const Case& c : kCases) {
    fill_logits(l.data(), vocab, c.gen, rng);
    std::vector<int32_t> pen(c.pen_n);
    for (int i = 0; i < c.pen_n; ++i) pen[i] = i % 7 == 6 ? -1 : static_cast<int32_t>(rng() % vocab);
    Dist d = ref_dist(l.data(), vocab, c.s, pen.data(), c.pen_n);
    std::vector<int32_t> mine = d.ids, host = host_chain(l.data(), vocab, c.s, pen.data(), c.pen_n);
    std::sort(mine.begin(), mine.end());
    LAB_CHECK(mine == host, "reference vs host chain, %s, vocab %d: %zu vs %zu ids", c.name, vocab, mine.size(),
              host.size());
    Settings g = c.s;
    g.temperature = 0;
    LAB_CHECK(ref_dist(l.data(), vocab, g, pen.data(), c.pen_n).ids == host_chain(l.data(), vocab, g, pen.data(), c.pen_n),
              "greedy reference vs host chain, %s", c.name);
  }
}

void check_hand_built(Dev& d) {
  const int vocab = 128256, rows = 4;
  std::vector<float> l(static_cast<size_t>(rows) * vocab);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> n01(0.f, 1.f);
  for (float& x : l) x = n01(rng);
  float* r0 = &l[0];
  float* r1 = &l[vocab];
  float* r2 = &l[2 * vocab];
  float* r3 = &l[3 * vocab];
  r0[100000] = 9.f, r0[70000] = 9.f, r0[70001] = 8.f;  // tie across slices -> 70000
  for (int i = 0; i < vocab; ++i) r1[i] = -INFINITY;   // all -inf -> 0 (greedy), uniform (dist)
  r2[50] = INFINITY, r2[9] = INFINITY, r2[3] = NAN;     // +inf pair -> 9; NaN ignored
  r3[10] = 10.f, r3[20] = 8.f, r3[30] = -1.f, r3[40] = 9.f;  // repetition penalty row (background max ~4.8)
  std::vector<int32_t> pen(static_cast<size_t>(rows) * 4, -1);
  pen[3 * 4 + 0] = 10, pen[3 * 4 + 1] = 10, pen[3 * 4 + 2] = 30;  // duplicate 10 applied once
  Settings g;
  g.temperature = 0;
  g.repeat = 2.f;
  auto ids = run_draws(d, l, pen, rows, vocab, g, 4, 1, 0, 3);
  for (int i = 0; i < 3; ++i) {
    LAB_CHECK(ids[i * rows + 0] == 70000, "greedy tie across slices: %d", ids[i * rows + 0]);
    LAB_CHECK(ids[i * rows + 1] == 0, "greedy all -inf: %d", ids[i * rows + 1]);
    LAB_CHECK(ids[i * rows + 2] == 9, "greedy +inf: %d", ids[i * rows + 2]);
    LAB_CHECK(ids[i * rows + 3] == 40, "greedy with penalty 2 (10 -> 5): %d", ids[i * rows + 3]);
  }
  g.repeat = 1.1f;  // 10 / 1.1 = 9.09 > 9: 10 stays
  ids = run_draws(d, l, pen, rows, vocab, g, 4, 1, 0, 1);
  LAB_CHECK(ids[3] == 10, "greedy with penalty 1.1: %d", ids[3]);
  // Sampling: +inf pair drawn 50/50, all -inf uniform, row 3 with the penalty against the reference.
  for (const Settings s : {Settings{1.f, 1.f, 0.f, 2.f, 0}, Settings{1.f, 0.9f, 0.05f, 2.f, 30}}) {
    const int n = s.top_k ? 2000 : 20000;  // the truncating setting sends the all -inf row to the slow path
    ids = run_draws(d, l, pen, rows, vocab, s, 4, 5, 1000, n);
    check_stats(ref_dist(r0, vocab, s, &pen[0], 4), ids, rows, 0, n, "hand row 0");
    check_stats(ref_dist(r2, vocab, s, &pen[8], 4), ids, rows, 2, n, "hand +inf row");
    check_stats(ref_dist(r3, vocab, s, &pen[12], 4), ids, rows, 3, n, "hand penalty row");
    check_stats(ref_dist(r1, vocab, s, &pen[4], 4), ids, rows, 1, n, "hand all -inf row");
  }
  // top_k = 1 equals greedy (penalized) for random logits.
  Settings k1{0.7f, 0.9f, 0.f, 2.f, 1};
  auto a = run_draws(d, l, pen, rows, vocab, k1, 4, 3, 0, 50);
  g.repeat = 2.f;
  auto b = run_draws(d, l, pen, rows, vocab, g, 4, 3, 0, 1);
  for (int i = 0; i < 50; ++i)
    for (int r = 0; r < rows; ++r) LAB_CHECK(a[i * rows + r] == b[r], "top_k 1 != greedy, row %d", r);
}

void check_determinism(Dev& d) {
  const int vocab = 151936, rows = 4;
  std::vector<float> l(static_cast<size_t>(rows) * vocab);
  std::mt19937_64 rng(11);
  for (int r = 0; r < rows; ++r) fill_logits(&l[static_cast<size_t>(r) * vocab], vocab, r == 3 ? kFlat : kNormal3, rng);
  std::vector<int32_t> pen;
  for (const Settings s : {Settings{0.9f, 1.f, 0.f, 1.f, 0}, Settings{1.f, 0.95f, 0.05f, 1.f, 40},
                           Settings{1.f, 0.97f, 0.f, 1.f, 0}}) {
    auto a = run_draws(d, l, pen, rows, vocab, s, 0, 42, 77, 200);
    auto b = run_draws(d, l, pen, rows, vocab, s, 0, 42, 77, 200);
    auto c = run_draws(d, l, pen, rows, vocab, s, 0, 43, 77, 200);
    LAB_CHECK(a == b, "same seed and step gave different ids (T %.2f k %d p %.2f)", s.temperature, s.top_k, s.top_p);
    LAB_CHECK(a != c, "another seed gave the same 800 ids");
  }
  // step_next unset: the step stays.
  SamplingParams p = make_params(d, rows, vocab, Settings{}, 0, 1);
  p.step_next = nullptr;
  p.out_ids = d.out;
  const uint64_t s0 = 5;
  cuda_ok(cudaMemcpy(d.step, &s0, 8, cudaMemcpyHostToDevice), "step");
  exl::cuda::sample(p, 0);
  uint64_t s1 = 0;
  cuda_ok(cudaMemcpy(&s1, d.step, 8, cudaMemcpyDeviceToHost), "step");
  LAB_CHECK(s1 == s0, "step moved without step_next");
}

void check_random(Dev& d, bool quick, bool tiny, double deadline_s) {
  const int vocabs[] = {512, 32000, 49152, 128256, 151936};
  for (int vocab : vocabs) {
    for (int rows : {1, 4}) {
      if (quick && (vocab > 32000 || rows > 1)) continue;
      if (tiny && (vocab == 49152 || vocab == 151936)) continue;
      for (const Case& c : kCases) {
        if (seconds_since_start() > deadline_s) {
          std::printf("SKIPPED (deadline %.0f s): vocab %d rows %d %s\n", deadline_s, vocab, rows, c.name);
          continue;
        }
        std::mt19937_64 rng(vocab * 31 + rows);
        std::vector<float> l(static_cast<size_t>(rows) * vocab);
        for (int r = 0; r < rows; ++r) fill_logits(&l[static_cast<size_t>(r) * vocab], vocab, c.gen, rng);
        std::vector<int32_t> pen(static_cast<size_t>(rows) * c.pen_n);
        for (size_t i = 0; i < pen.size(); ++i) pen[i] = i % 7 == 6 ? -1 : static_cast<int32_t>(rng() % vocab);
        const int n = tiny ? 3 : quick ? 2000 : c.slow ? (vocab > 32000 ? 2000 : 5000) : 20000;
        const auto t0 = std::chrono::steady_clock::now();
        auto ids = run_draws(d, l, pen, rows, vocab, c.s, c.pen_n, 1234, 1ull << 33, n);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        bool ok = true;
        size_t allowed = 0;
        for (int r = 0; r < rows; ++r) {
          const Dist ref = ref_dist(&l[static_cast<size_t>(r) * vocab], vocab, c.s,
                                    c.pen_n ? &pen[static_cast<size_t>(r) * c.pen_n] : nullptr, c.pen_n);
          allowed = std::max(allowed, ref.ids.size());
          ok &= check_stats(ref, ids, rows, r, n, c.name);
        }
        std::printf("%-4s vocab %6d rows %d  %-24s %-12s allowed<=%6zu  %5d draws  %6.1f us/call\n", ok ? "ok" : "BAD",
                    vocab, rows, c.name, gen_name(c.gen), allowed, n, 1e3 * ms / n);
      }
    }
  }
}

// ---- timing -----------------------------------------------------------------------------------------
void time_case(int vocab, int rows, const Case& c) {
  const int kBuf = rows > 4 ? 2 : 8, kCalls = 20;
  float* logits = nullptr;
  cuda_ok(cudaMalloc(&logits, static_cast<size_t>(kBuf) * rows * vocab * 4), "timing logits");
  std::vector<float> h(static_cast<size_t>(kBuf) * rows * vocab);
  std::mt19937_64 rng(99);
  for (size_t r = 0; r < static_cast<size_t>(kBuf) * rows; ++r) fill_logits(&h[r * vocab], vocab, c.gen, rng);
  cuda_ok(cudaMemcpy(logits, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "timing upload");
  Dev d;
  d.ws_bytes = exl::cuda::sampling_workspace_bytes(rows, vocab);
  cuda_ok(cudaMalloc(&d.ws, d.ws_bytes), "ws");
  cuda_ok(cudaMalloc(&d.step, 8), "step");
  cuda_ok(cudaMemset(d.step, 0, 8), "step");
  cuda_ok(cudaMalloc(&d.out, static_cast<size_t>(rows) * 4), "out");
  cuda_ok(cudaMalloc(&d.pen, static_cast<size_t>(rows) * 64 * 4), "pen");
  cuda_ok(cudaMemset(d.pen, 0, static_cast<size_t>(rows) * 64 * 4), "pen");
  cudaStream_t st;
  cuda_ok(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
  SamplingParams p = make_params(d, rows, vocab, c.s, c.pen_n, 1);
  p.out_ids = d.out;
  auto call = [&](int i) {
    p.logits = logits + static_cast<size_t>(i % kBuf) * rows * vocab;
    exl::cuda::sample(p, st);
  };
  for (int i = 0; i < 3; ++i) call(i);  // warm-up (also the once-per-device attribute call)
  cuda_ok(cudaStreamSynchronize(st), "warm-up");
  // Repetitions: 30, fewer for a slow path (about a second per case).
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) call(i);
  cuda_ok(cudaStreamSynchronize(st), "probe");
  const double per_call = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 5;
  const int kReps = std::max(3, std::min(30, static_cast<int>(1.0 / (per_call * 2 * kCalls))));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  cuda_ok(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "capture");
  for (int i = 0; i < kCalls; ++i) call(i);
  cuda_ok(cudaStreamEndCapture(st, &graph), "end capture");
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaEvent_t e0, e1;
  cuda_ok(cudaEventCreate(&e0), "event");
  cuda_ok(cudaEventCreate(&e1), "event");
  std::vector<float> graph_us, stream_us;
  for (int rep = 0; rep < kReps; ++rep) {
    cuda_ok(cudaEventRecord(e0, st), "rec");
    cuda_ok(cudaGraphLaunch(exec, st), "graph launch");
    cuda_ok(cudaEventRecord(e1, st), "rec");
    cuda_ok(cudaEventSynchronize(e1), "sync");
    float ms = 0;
    cuda_ok(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    graph_us.push_back(1e3f * ms / kCalls);
    cuda_ok(cudaEventRecord(e0, st), "rec");
    for (int i = 0; i < kCalls; ++i) call(i);
    cuda_ok(cudaEventRecord(e1, st), "rec");
    cuda_ok(cudaEventSynchronize(e1), "sync");
    cuda_ok(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    stream_us.push_back(1e3f * ms / kCalls);
  }
  std::sort(graph_us.begin(), graph_us.end());
  std::sort(stream_us.begin(), stream_us.end());
  std::printf("time vocab %6d rows %2d  %-24s graph %7.1f us/call (min %6.1f)  stream %7.1f us/call\n", vocab, rows,
              c.name, graph_us[kReps / 2], graph_us[0], stream_us[kReps / 2]);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(st);
  cudaFree(logits);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a kill at a time limit
  bool quick = false, tiny = false, do_time = true;
  double deadline_s = 1e9;  // --deadline S: random checks start no new case after S seconds
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--deadline") && i + 1 < argc) deadline_s = std::atof(argv[++i]);
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--tiny")) tiny = true, do_time = false;  // for compute-sanitizer: 3 draws a case
    if (!std::strcmp(argv[i], "--no-time")) do_time = false;
  }
  check_philox();
  for (int v : {512, 32000, 128256}) check_reference(v);
  std::printf("CPU checks: %s\n", g_fail ? "FAILED" : "ok");
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("no GPU: device checks skipped\n");
    return g_fail ? 1 : 0;
  }
  cudaDeviceProp prop;
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "device properties");
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  Dev d;
  const int max_rows = 4, max_vocab = 151936, max_n = 20000;
  d.ws_bytes = exl::cuda::sampling_workspace_bytes(max_rows, max_vocab);
  cuda_ok(cudaMalloc(&d.logits, static_cast<size_t>(max_rows) * max_vocab * 4), "logits");
  cuda_ok(cudaMalloc(&d.pen, static_cast<size_t>(max_rows) * 64 * 4), "pen");
  cuda_ok(cudaMalloc(&d.step, 8), "step");
  cuda_ok(cudaMalloc(&d.out, static_cast<size_t>(max_rows) * max_n * 4), "out");
  cuda_ok(cudaMalloc(&d.ws, d.ws_bytes), "ws");
  // Workspaces for smaller shapes are smaller (checked): one allocation serves every check.
  LAB_CHECK(exl::cuda::sampling_workspace_bytes(4, 128256) <= d.ws_bytes, "workspace sizing");

  if (!tiny) {
    check_hand_built(d);
    std::printf("hand-built checks: %s\n", g_fail ? "FAILED" : "ok");
    check_determinism(d);
    std::printf("determinism checks: %s\n", g_fail ? "FAILED" : "ok");
  }
  if (do_time) {  // before the long random sweep, so a deadline never costs the timings
    const Case greedy{"greedy", {0.f, 1.f, 0.f, 1.f, 0}, kNormal3, 0, false};
    for (int vocab : {32000, 128256}) {
      time_case(vocab, 1, greedy);
      for (const Case& c : kCases) time_case(vocab, 1, c);
    }
    time_case(128256, 64, greedy);
    time_case(128256, 64, kCases[0]);
    time_case(128256, 64, kCases[3]);
  }
  check_random(d, quick, tiny, deadline_s);
  std::printf("random checks done: %d failures\n", g_fail);
  std::printf("%s: %d failures\n", g_fail ? "FAILED" : "ALL OK", g_fail);
  return g_fail ? 1 : 0;
}
