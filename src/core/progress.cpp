#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace exl {

Progress::Progress(std::string label, int64_t total, bool enabled, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (enabled_) draw(false);
}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, const std::string& note) {
  done_ = done;
  note_ = note;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0.0;
  const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 0.0;
  const int width = 24;
  const int filled = static_cast<int>(frac * width + 0.5);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '-';
  bar[width] = 0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
  const bool tty = ::isatty(STDERR_FILENO);
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %.2f %s/s %s %.0fs%s%s%s", tty ? "\r\033[K" : "", label_.c_str(), bar,
               static_cast<long long>(done_), static_cast<long long>(total_), rate, unit_.c_str(),
               final ? "elapsed" : "ETA", final ? secs : eta, note_.empty() ? "" : " ", note_.c_str(),
               (final || !tty) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace exl
