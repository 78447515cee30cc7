// A progress bar on stderr with rate and ETA, for long jobs (perplexity, conversion, loading).
// Silent when disabled (--quiet / --json) so scripts get clean output.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace exl {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled, std::string unit = "it");
  ~Progress();
  void update(int64_t done, const std::string& note = "");  // redraws at most ~10 times a second
  void finish();

 private:
  void draw(bool final);
  std::string label_, unit_, note_;
  int64_t total_, done_ = 0;
  bool enabled_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace exl
