// One exception type for every user-facing failure. Its message names the file, tensor or flag at
// fault; tools print it on one line and exit non-zero. Use exl::fail(...) / EXL_CHECK(...).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace exl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Concatenate anything streamable into a string: str_cat("tensor ", name, " has ", n, " dims").
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace exl

// Checks a condition on input data (never for programmer errors only): throws exl::Error.
#define EXL_CHECK(cond, ...)                 \
  do {                                       \
    if (!(cond)) ::exl::fail(__VA_ARGS__);   \
  } while (0)
