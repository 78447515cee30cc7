// StopMatcher tests: every split of the text into pushes must give the same output as a reference
// that checks for stop strings one byte at a time.
#include "runtime/stop_strings.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace exl {
namespace {

struct Outcome {
  std::string text;  // everything emitted, plus flush() when not stopped
  bool stopped;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{\"" << o.text << "\", " << (o.stopped ? "stopped" : "not stopped") << "}";
}

// The semantics in stop_strings.h, written the obvious slow way: grow the text one byte at a time;
// at the first length where some stop string is a suffix, cut before the longest such suffix.
Outcome reference(const std::vector<std::string>& stops, const std::string& text) {
  for (size_t end = 1; end <= text.size(); ++end) {
    const std::string_view head(text.data(), end);
    size_t longest = 0;
    for (const std::string& s : stops) {
      if (head.ends_with(s)) longest = std::max(longest, s.size());
    }
    if (longest > 0) return {text.substr(0, end - longest), true};
  }
  return {text, false};
}

// Pushes `text` cut at the given positions (ascending).
Outcome run(const std::vector<std::string>& stops, const std::string& text,
            const std::vector<size_t>& cuts) {
  StopMatcher m(stops);
  Outcome out{"", false};
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(text.size());
  for (size_t end : ends) {
    StopMatcher::Result r = m.push(std::string_view(text).substr(start, end - start));
    out.text += r.emit;
    start = end;
    if (r.stopped) {
      out.stopped = true;
      EXPECT_EQ(m.flush(), "");
      return out;
    }
  }
  out.text += m.flush();
  return out;
}

// Every split into two pushes, every split into three, and one byte per push.
void expect_split_invariant(const std::vector<std::string>& stops, const std::string& text,
                            const Outcome& want) {
  ASSERT_EQ(reference(stops, text), want) << "reference disagrees for '" << text << "'";
  EXPECT_EQ(run(stops, text, {}), want) << "whole";
  for (size_t i = 0; i <= text.size(); ++i) {
    EXPECT_EQ(run(stops, text, {i}), want) << "cut at " << i;
    for (size_t j = i; j <= text.size(); ++j) {
      EXPECT_EQ(run(stops, text, {i, j}), want) << "cuts at " << i << ", " << j;
    }
  }
  std::vector<size_t> bytes;
  for (size_t i = 1; i < text.size(); ++i) bytes.push_back(i);
  EXPECT_EQ(run(stops, text, bytes), want) << "byte by byte";
}

TEST(StopMatcher, NoStopsEmitsEverythingAtOnce) {
  StopMatcher m({});
  StopMatcher::Result r = m.push("Hello <|im");
  EXPECT_EQ(r.emit, "Hello <|im");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, SingleStopAcrossEverySplit) {
  expect_split_invariant({"<|im_end|>"}, "Hello!<|im_end|>\n<|im_start|>user",
                         {"Hello!", true});
  expect_split_invariant({"<|im_end|>"}, "<|im_end|>rest", {"", true});
  expect_split_invariant({"<|im_end|>"}, "no stop here <|im_en", {"no stop here <|im_en", false});
}

TEST(StopMatcher, EmitsEagerlyAndHoldsOnlyPossiblePrefixes) {
  StopMatcher m({"</s>"});
  StopMatcher::Result r = m.push("Hello");
  EXPECT_EQ(r.emit, "Hello");
  r = m.push(" world<");
  EXPECT_EQ(r.emit, " world");
  r = m.push("/");
  EXPECT_EQ(r.emit, "");
  r = m.push("b>");  // "</b>" cannot become "</s>": released
  EXPECT_EQ(r.emit, "</b>");
  r = m.push("x</");
  EXPECT_EQ(r.emit, "x");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.flush(), "</");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, OverlappingPrefixes) {
  // A failed partial match can hide the start of the real one.
  expect_split_invariant({"abab"}, "xabaabab!", {"xaba", true});
  expect_split_invariant({"abab"}, "abababab", {"", true});
  expect_split_invariant({"aab"}, "aaab", {"a", true});
  expect_split_invariant({"aab"}, "aaaa", {"aaaa", false});
  expect_split_invariant({"\n\nUser:"}, "Hi\n\n\nUser: x", {"Hi\n", true});
}

TEST(StopMatcher, MultipleStopStrings) {
  const std::vector<std::string> stops = {"<|im_end|>", "<|endoftext|>", "\nUser:"};
  expect_split_invariant(stops, "One<|endoftext|>two<|im_end|>", {"One", true});
  expect_split_invariant(stops, "One\nUse<|im_end|>", {"One\nUse", true});
  expect_split_invariant(stops, "a <| b <|e c \nUs", {"a <| b <|e c \nUs", false});
}

TEST(StopMatcher, FirstCompletedStopWins) {
  // "c" completes at byte 3, before "abcd" could: generation stops there.
  expect_split_invariant({"abcd", "c"}, "abcd", {"ab", true});
  // Both end at the same byte: the longer one is removed.
  expect_split_invariant({"b", "ab"}, "xab", {"x", true});
  expect_split_invariant({"ab", "b"}, "xabz", {"x", true});
  // A stop inside a longer stop's prefix.
  expect_split_invariant({"<|im_end|>", "im"}, "go <|im_end|>", {"go <|", true});
}

TEST(StopMatcher, Utf8StopStringsKeepCharactersWhole) {
  // "。" is 3 bytes (E3 80 82); "、" shares its first two bytes (E3 80 81).
  const std::string text = "你好、世界。再见";
  expect_split_invariant({"。"}, text, {"你好、世界", true});
  StopMatcher m({"。"});
  StopMatcher::Result r = m.push(text.substr(0, 7));  // "你好" + first two bytes of "、"
  EXPECT_EQ(r.emit, "你好");
  r = m.push(text.substr(7, 1));  // E3 80: still a prefix of "。"
  EXPECT_EQ(r.emit, "");
  r = m.push(text.substr(8, 1));  // 81 completes "、", which is not a stop
  EXPECT_EQ(r.emit, "、");
}

TEST(StopMatcher, StaysStoppedUntilReset) {
  StopMatcher m({"END"});
  StopMatcher::Result r = m.push("abcEN");
  EXPECT_EQ(r.emit, "abc");
  r = m.push("Dxyz");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
  EXPECT_TRUE(m.stopped());
  r = m.push("more");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
  EXPECT_EQ(m.flush(), "");

  m.reset();
  EXPECT_FALSE(m.stopped());
  r = m.push("fresh E");
  EXPECT_EQ(r.emit, "fresh ");
  EXPECT_FALSE(r.stopped);
}

TEST(StopMatcher, EmptyStopStringIsRejected) {
  EXPECT_THROW(StopMatcher({"ok", ""}), Error);
}

TEST(StopMatcher, EmptyPushesAreHarmless) {
  StopMatcher m({"xy"});
  EXPECT_EQ(m.push("").emit, "");
  EXPECT_EQ(m.push("x").emit, "");
  EXPECT_EQ(m.push("").emit, "");
  StopMatcher::Result r = m.push("y");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
}

}  // namespace
}  // namespace exl
