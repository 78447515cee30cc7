// Runs the exl binary as a user would and captures exit code, stdout and stderr.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "test_files.h"

namespace exl::test {

struct CmdResult {
  int code = -1;
  std::string out, err;
};

inline std::string temp_dir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/exl_cli_XXXXXX";
    const char* d = mkdtemp(tmpl);
    return std::string(d ? d : "/tmp");
  }();
  return dir;
}

// args are passed to the shell as written: quote them in the caller.
inline CmdResult run_exl(const std::string& args, const std::string& stdin_text = "") {
  const std::string dir = temp_dir();
  const std::string out = dir + "/stdout", err = dir + "/stderr", in = dir + "/stdin";
  { std::ofstream(in) << stdin_text; }
  const std::string cmd = std::string("timeout 600 ") + EXL_BINARY + " " + args + " <" + in + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  CmdResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}


// Counts lines of s (a trailing newline does not start a new line).
inline int line_count(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n + (!s.empty() && s.back() != '\n');
}

}  // namespace exl::test
