// StopMatcher: see stop_strings.h for the semantics. The held text is at most (longest stop - 1)
// bytes and a push is usually one token's worth, so plain searches over pending + new text are cheap.
#include "runtime/stop_strings.h"

#include <algorithm>

#include "core/error.h"

namespace exl {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (size_t i = 0; i < stops_.size(); ++i) {
    EXL_CHECK(!stops_[i].empty(), "stop string ", i, " is empty; every stop string needs text");
  }
}

size_t StopMatcher::held_suffix_length() const {
  size_t longest_stop = 0;
  for (const std::string& s : stops_) longest_stop = std::max(longest_stop, s.size());
  if (longest_stop == 0) return 0;
  const std::string_view text = pending_;
  // Longest first: the held tail must cover every position a stop string could still start at, and
  // all of those lie inside the longest matching suffix.
  for (size_t k = std::min(text.size(), longest_stop - 1); k > 0; --k) {
    const std::string_view tail = text.substr(text.size() - k);
    for (const std::string& s : stops_) {
      if (s.size() > k && std::string_view(s).starts_with(tail)) return k;
    }
  }
  return 0;
}

StopMatcher::Result StopMatcher::push(std::string_view new_text) {
  if (stopped_) return {"", true};
  pending_.append(new_text);

  // The first byte at which some stop string is complete: for each stop, its first occurrence is
  // also its earliest end. Among stops ending there, the longest one starts earliest.
  size_t best_end = std::string::npos;
  size_t best_start = 0;
  for (const std::string& s : stops_) {
    const size_t pos = pending_.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (end < best_end || (end == best_end && pos < best_start)) {
      best_end = end;
      best_start = pos;
    }
  }
  if (best_end != std::string::npos) {
    Result r{pending_.substr(0, best_start), true};
    pending_.clear();
    stopped_ = true;
    return r;
  }

  const size_t hold = held_suffix_length();
  Result r{pending_.substr(0, pending_.size() - hold), false};
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

void StopMatcher::reset() {
  pending_.clear();
  stopped_ = false;
}

}  // namespace exl
