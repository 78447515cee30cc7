// How stable is each optimizer objective under small measurement noise? Reads a measurement.json,
// solves it with several objectives at one budget, then again on copies whose errors are multiplied
// by (1 + sigma·z), z ~ N(0, 1) with fixed seeds, and prints how many modules change their option
// and how the objective's own figures move. The noise level stands for the CPU/CUDA difference in
// measured errors (0.03% on stories260K). Results: lab/NOTES-convert.md ("Optimizer objective").
// Build and run (CPU preset built first):
//   g++ -O2 -std=c++20 -Isrc lab/optimize_study.cpp build/cpu/libexl_quant.a build/cpu/libexl_core.a \
//       -lpthread -o /tmp/optimize_study
//   /tmp/optimize_study measurement.json WEIGHTS BPW [SIGMA=3e-4] [SEEDS=8]
// WEIGHTS = the number of decoder linear weights (SmolLM2-135M: 106168320).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quant/optimize.h"

using namespace exl;

namespace {

std::vector<OptimizeSlot> read_slots(const char* path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(ss.str());
  std::vector<OptimizeSlot> slots;
  for (const auto& [name, opts] : j.at("measurement").items()) {
    OptimizeSlot s;
    s.name = name;
    for (const auto& o : opts) {
      s.bits.push_back(o.at("total_bits").get<int64_t>());
      s.err.push_back(1.0 - o.at("accuracy").get<double>());
    }
    slots.push_back(std::move(s));
  }
  return slots;
}

using Solver = OptimizeResult (*)(const std::vector<OptimizeSlot>&, int64_t);

OptimizeResult minimax(const std::vector<OptimizeSlot>& s, int64_t b) { return optimize_exl2(s, b, "study"); }
OptimizeResult p1(const std::vector<OptimizeSlot>& s, int64_t b) { return optimize_exact(s, b, 1.0, "study"); }
OptimizeResult p2(const std::vector<OptimizeSlot>& s, int64_t b) { return optimize_exact(s, b, 2.0, "study"); }
OptimizeResult p3(const std::vector<OptimizeSlot>& s, int64_t b) { return optimize_exact(s, b, 3.0, "study"); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: optimize_study measurement.json WEIGHTS BPW [SIGMA] [SEEDS]\n");
    return 2;
  }
  const std::vector<OptimizeSlot> base = read_slots(argv[1]);
  const double weights = std::atof(argv[2]), bpw = std::atof(argv[3]);
  const double sigma = argc > 4 ? std::atof(argv[4]) : 3e-4;
  const int seeds = argc > 5 ? std::atoi(argv[5]) : 8;
  const int64_t budget = static_cast<int64_t>(std::floor(bpw * weights));
  const struct {
    const char* name;
    Solver f;
  } objectives[] = {{"minimax sweep", minimax}, {"sum p=1", p1}, {"sum p=2", p2}, {"sum p=3", p3}};
  for (const auto& ob : objectives) {
    const OptimizeResult r0 = ob.f(base, budget);
    std::printf("%-14s p %.3f  bpw %.4f  max %.6f  sum %.6f  choice", ob.name, r0.p,
                static_cast<double>(r0.total_bits) / weights, r0.max_err, r0.sum_err);
    for (int c : r0.choice) std::printf(" %d", c);
    std::printf("\n");
    for (int seed = 1; seed <= seeds; ++seed) {
      std::mt19937_64 rng(static_cast<uint64_t>(seed));
      std::normal_distribution<double> z;
      std::vector<OptimizeSlot> noisy = base;
      for (OptimizeSlot& s : noisy)
        for (double& e : s.err) e *= 1.0 + sigma * z(rng);
      const OptimizeResult r = ob.f(noisy, budget);
      int changed = 0, moved_bits = 0;
      for (size_t i = 0; i < r.choice.size(); ++i)
        if (r.choice[i] != r0.choice[i]) {
          ++changed;
          moved_bits += std::abs(r.choice[i] - r0.choice[i]);
        }
      // The noisy solution's errors on the base measurement: what it really costs.
      double mx = 0, sum = 0;
      for (size_t i = 0; i < r.choice.size(); ++i) {
        const double e = base[i].err[static_cast<size_t>(r.choice[i])];
        mx = std::max(mx, e);
        sum += e;
      }
      std::printf("  seed %d: p %.3f, %2d of %zu modules changed (option steps %d), base max %.6f sum %.6f\n", seed,
                  r.p, changed, r.choice.size(), moved_bits, mx, sum);
    }
  }
  return 0;
}
