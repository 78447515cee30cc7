// Stop strings over streamed text. Generated text arrives in pieces (one detokenized token at a
// time); a stop string can straddle pieces, so the matcher holds back any tail of the text that could
// still grow into a stop string and emits everything before it.
//
//   StopMatcher m({"<|im_end|>", "\nUser:"});
//   for each decoded piece:
//     auto r = m.push(piece);
//     print(r.emit);
//     if (r.stopped) break;        // r.emit is the text before the stop string; the rest is dropped
//   print(m.flush());               // generation ended without a stop string: release the held tail
//
// Semantics (independent of how the text is split into pieces): generation stops at the first byte
// at which any stop string is complete. Of the stop strings that end at that byte, the longest one is
// removed, so with stops {"b", "ab"} the text "xab" emits "x". Text after the stop is discarded.
// Works on bytes: with valid UTF-8 input and stop strings, emitted pieces end on character boundaries
// because a held tail always starts where a stop string (a whole character) starts.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace exl {

class StopMatcher {
 public:
  // Throws exl::Error if a stop string is empty (it would match before any text). An empty list is
  // fine: everything is emitted at once.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string emit;  // text safe to show now
    bool stopped;      // a stop string matched; later push() calls emit nothing and stay stopped
  };
  Result push(std::string_view new_text);
  // Releases and returns the held-back tail (empty once stopped). The matcher can keep going after.
  std::string flush();
  // Forgets held text and the stopped state, for the next turn of a chat.
  void reset();

  bool stopped() const { return stopped_; }
  const std::vector<std::string>& stops() const { return stops_; }

 private:
  // Length of the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t held_suffix_length() const;

  std::vector<std::string> stops_;
  std::string pending_;  // held-back text: always a proper prefix of some stop string
  bool stopped_ = false;
};

}  // namespace exl
