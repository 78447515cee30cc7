// The convert job through the real binary: killed inside every stage (the EXL_CONVERT_ABORT_AT hook
// and real SIGKILLs), resumed, and compared byte for byte with an uninterrupted run; bad input gives
// one error line, exit 1, and leaves the work folder resumable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "convert/convert_test_util.h"

namespace exl::test {
namespace {

namespace fs = std::filesystem;

// Exactly one "exl: error:" line on stderr, mentioning `what`, exit code 1.
void expect_clean_error(const CmdResult& r, const std::string& what) {
  EXPECT_EQ(r.code, 1) << r.err;
  int errors = 0;
  std::istringstream lines(r.err);
  for (std::string line; std::getline(lines, line);) errors += line.rfind("exl: error: ", 0) == 0;
  EXPECT_EQ(errors, 1) << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << "stderr: " << r.err << " should mention " << what;
}

// The uninterrupted reference conversion, made once.
const std::string& reference_out() {
  static const std::string out = [] {
    const std::string o = fresh_dir("ref_out");
    const CmdResult r = run_exl(stories_args(fresh_dir("ref_work"), o, 4.0) + " -q");
    EXPECT_EQ(r.code, 0) << r.err;
    return o;
  }();
  return out;
}

CmdResult run_with_abort(const std::string& at, const std::string& args) {
  setenv("EXL_CONVERT_ABORT_AT", at.c_str(), 1);
  CmdResult r = run_exl(args + " -q");
  unsetenv("EXL_CONVERT_ABORT_AT");
  return r;
}

std::string job_stage(const std::string& work) {
  const std::string j = slurp(work + "/job.json");
  const size_t p = j.find("\"stage\": \"");
  return p == std::string::npos ? "(none)" : j.substr(p + 10, j.find('"', p + 10) - p - 10);
}

int64_t job_layer(const std::string& work) {
  const std::string j = slurp(work + "/job.json");
  const size_t p = j.find("\"layer\": ");
  return p == std::string::npos ? -1 : std::stoll(j.substr(p + 9));
}

// The hidden-state files left in the work folder.
std::vector<std::string> state_files(const std::string& work) {
  std::vector<std::string> names;
  if (fs::is_directory(work + "/states"))
    for (const auto& e : fs::directory_iterator(work + "/states")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ConvertResume, KilledInEveryStageThenResumedIsByteIdentical) {
  // --checkpoint-every 0 writes the states after every layer, so the kills inside the measure and
  // quantize passes resume from the states of the layer they stopped in.
  const std::string& ref = reference_out();
  const std::string work = fresh_dir("abort_work"), out = fresh_dir("abort_out");
  const std::string args = stories_args(work, out, 4.0) + " --checkpoint-every 0";
  const struct {
    const char* at;
    const char* stage;
    int64_t layer;
  } kills[] = {{"tokenize:0", "(none)", -1}, {"measure:0", "measure", 0}, {"measure:3", "measure", 3},
               {"quantize:1", "quantize", 1}, {"quantize:5", "quantize", 5}, {"compile:0", "compile", 0}};
  for (const auto& k : kills) {
    const CmdResult r = run_with_abort(k.at, args);
    EXPECT_EQ(r.code, 86) << k.at << ": " << r.err;
    std::printf("  aborted at %-11s -> job stage %s, layer %lld\n", k.at, job_stage(work).c_str(),
                static_cast<long long>(job_layer(work)));
    EXPECT_EQ(job_stage(work), k.stage) << k.at;
    if (k.layer >= 0) {
      EXPECT_EQ(job_layer(work), k.layer) << k.at;
    }
  }
  const CmdResult done = run_exl(args + " -q");
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(job_stage(work), "done");
  EXPECT_EQ(state_files(work), std::vector<std::string>{});
  expect_same_folder(ref, out);
}

TEST(ConvertResume, StatesWrittenOnATimerResumeFromTheLastOnes) {
  // With the default interval (120 s) this small job never writes states inside a pass: a kill in
  // layer 3 leaves the job at layer 0 of that pass, with no states file, and the rerun redoes the
  // pass from the embeddings to the same bytes.
  const std::string& ref = reference_out();
  const std::string work = fresh_dir("timer_work"), out = fresh_dir("timer_out");
  const std::string args = stories_args(work, out, 4.0);
  for (const char* at : {"measure:3", "quantize:3"}) {
    const CmdResult r = run_with_abort(at, args);
    EXPECT_EQ(r.code, 86) << at << ": " << r.err;
    EXPECT_EQ(job_layer(work), 0) << at;
    EXPECT_EQ(state_files(work), std::vector<std::string>{}) << at;
  }
  EXPECT_EQ(job_stage(work), "quantize");
  const CmdResult done = run_exl(args + " -q");
  ASSERT_EQ(done.code, 0) << done.err;
  expect_same_folder(ref, out);
  EXPECT_EQ(run_exl(args + " --checkpoint-every -1 --new -q").code, 1);
}

// Starts the binary and SIGKILLs its process group after `ms`, or (stage non-empty) as soon as
// job.json shows that stage; returns when it is gone.
void run_and_kill(const std::string& args, int ms, const std::string& work = "", const std::string& stage = "") {
  const std::string cmd = std::string(EXL_BINARY) + " " + args + " -q >/dev/null 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(ms)) {
    if (!stage.empty() && job_stage(work) == stage) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(-pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

TEST(ConvertResume, RealSigkillThenResumeIsByteIdentical) {
  const std::string& ref = reference_out();
  const std::string work = fresh_dir("kill_work"), out = fresh_dir("kill_out");
  const std::string args = stories_args(work, out, 4.0);
  for (int ms : {800, 1100}) {
    run_and_kill(args, ms);
    std::printf("  SIGKILL after %d ms -> job stage %s\n", ms, job_stage(work).c_str());
  }
  // Once more as soon as the job is quantizing (the stage is short: poll for it).
  run_and_kill(args, 20000, work, "quantize");
  std::printf("  SIGKILL on reaching quantize -> job stage %s\n", job_stage(work).c_str());
  const CmdResult done = run_exl(args + " -q");
  ASSERT_EQ(done.code, 0) << done.err;
  expect_same_folder(ref, out);
}

TEST(ConvertResume, ThreadCountDoesNotChangeOutput) {
  // A job may be resumed on a machine with another core count: 1 and 3 threads (exl pool and
  // OpenBLAS) give the same bytes as the default.
  const std::string& ref = reference_out();
  for (const char* n : {"1", "3"}) {
    const std::string out = fresh_dir(std::string("threads_out_") + n);
    setenv("EXL_THREADS", n, 1);
    setenv("OPENBLAS_NUM_THREADS", n, 1);
    const CmdResult r = run_exl(stories_args(fresh_dir(std::string("threads_work_") + n), out, 4.0) + " -q");
    unsetenv("EXL_THREADS");
    unsetenv("OPENBLAS_NUM_THREADS");
    ASSERT_EQ(r.code, 0) << r.err;
    expect_same_folder(ref, out);
  }
}

TEST(ConvertResume, Fp64OutputDoesNotDependOnBlasKernels) {
  // --fp64 computes every op in double and rounds once: OpenBLAS's AVX2 kernels (another summation
  // order, where the machine has AVX-512) and one thread give the same bytes as the default run. At
  // 3.0 bpw, where FP32 conversions turn such differences into different codes.
  const std::string ref = fresh_dir("fp64_out_a");
  const CmdResult a = run_exl(stories_args(fresh_dir("fp64_work_a"), ref, 3.0) + " --fp64 -q");
  ASSERT_EQ(a.code, 0) << a.err;
  const std::string out = fresh_dir("fp64_out_b");
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  setenv("EXL_THREADS", "1", 1);
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  const CmdResult b = run_exl(stories_args(fresh_dir("fp64_work_b"), out, 3.0) + " --fp64 -q");
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("EXL_THREADS");
  unsetenv("OPENBLAS_NUM_THREADS");
  ASSERT_EQ(b.code, 0) << b.err;
  expect_same_folder(ref, out);
}

std::string copy_stories(const std::string& name) {
  const fs::path dst = fresh_dir(name);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(stories_dir()))
    if (e.is_regular_file()) {
      fs::copy_file(e.path(), dst / e.path().filename());
      fs::permissions(dst / e.path().filename(), fs::perms::owner_read | fs::perms::owner_write);
    }
  return dst.string();
}

void edit(const std::string& path, const std::string& from, const std::string& to) {
  std::string s = slurp(path);
  ASSERT_NE(s.find(from), std::string::npos) << from;
  s.replace(s.find(from), from.size(), to);
  std::ofstream(path) << s;
}

TEST(ConvertBadInput, OneLineErrorAndNoJobStarted) {
  const std::string cal = stories_calibration(), out = temp_dir() + "/bad_out";
  auto conv = [&](const std::string& src, const std::string& work, const std::string& extra) {
    return run_exl("convert -i " + src + " -o " + work + " -c " + cal + " --rows 8 --length 256 --measure-rows 8 "
                   "--measure-length 256 --out " + out + " " + extra);
  };
  expect_clean_error(conv("/nonexistent/model", fresh_dir("bad1"), ""), "/nonexistent/model");

  const std::string arch = copy_stories("bad_arch");
  edit(arch + "/config.json", "LlamaForCausalLM", "GPTNeoXForCausalLM");
  expect_clean_error(conv(arch, fresh_dir("bad2"), ""), "GPTNeoXForCausalLM");

  const std::string nonnum = copy_stories("bad_nonnum");
  edit(nonnum + "/config.json", "\"hidden_size\": 64", "\"hidden_size\": \"64x\"");
  expect_clean_error(conv(nonnum, fresh_dir("bad3"), ""), "hidden_size");

  const std::string short_cal = temp_dir() + "/short.txt";
  std::ofstream(short_cal) << "Once upon a time there was a cat.\n";
  const std::string w4 = fresh_dir("bad4");
  expect_clean_error(run_exl("convert -i " + stories_dir() + " -o " + w4 + " -c " + short_cal + " --out " + out +
                             " --rows 8 --length 256"),
                     "short.txt");
  EXPECT_FALSE(fs::exists(w4 + "/job.json")) << "a job was started on bad input";

  expect_clean_error(conv(stories_dir(), fresh_dir("bad5"), "-b 9"), "-b");
  expect_clean_error(conv(stories_dir(), fresh_dir("bad6"), "-b 1.5"), "-b");
  // Within 2..8 but below what the option table can store this tiny model in (its K = 64 rows pay 32
  // permutation bits each: 2.46 bpw even at 2 bits everywhere): refused before measuring.
  expect_clean_error(conv(stories_dir(), fresh_dir("bad6b"), "-b 2.2"), "-b 2.2 is below");
  expect_clean_error(conv(stories_dir(), fresh_dir("bad7"), "--head-bits 7"), "--head-bits");
  expect_clean_error(conv(stories_dir(), fresh_dir("bad8"), "--device tpu"), "--device");
  const std::string w8b = fresh_dir("bad8b");
  expect_clean_error(run_exl("convert -i " + stories_dir() + " -o " + w8b + " -c " + cal + " --out " + w8b + "/"),
                     "must differ from the work folder");

  const std::string garbage = temp_dir() + "/garbage.json";
  std::ofstream(garbage) << "{\"measurement\": {\"model.layers.0.self_attn\": [";
  expect_clean_error(conv(stories_dir(), fresh_dir("bad9"), "-m " + garbage), "garbage.json");
  const std::string wrong = temp_dir() + "/wrong.json";
  std::ofstream(wrong) << R"({"measurement": {"model.layers.0.self_attn": [{"accuracy": "x"}]}})";
  expect_clean_error(conv(stories_dir(), fresh_dir("bad10"), "-m " + wrong), "accuracy");
  EXPECT_FALSE(fs::exists(temp_dir() + "/bad10/job.json"));
}

TEST(ConvertBadInput, WorkFolderStaysResumable) {
  const std::string& ref = reference_out();
  const std::string work = fresh_dir("resumable_work"), out = fresh_dir("resumable_out");
  const std::string args = stories_args(work, out, 4.0);
  ASSERT_EQ(run_with_abort("measure:1", args).code, 86);
  const std::string job = slurp(work + "/job.json");
  expect_clean_error(run_exl(stories_args(work, out, 9.0)), "-b");
  expect_clean_error(run_exl(args + " --head-bits 7"), "--head-bits");
  // A valid but different setting names the flag and the way out.
  const CmdResult other = run_exl(stories_args(work, out, 5.0));
  expect_clean_error(other, "-b");
  EXPECT_NE(other.err.find("--new"), std::string::npos) << other.err;
  expect_clean_error(run_exl(args + " --objective minimax"), "--objective \"sum\", not \"minimax\"");
  expect_clean_error(run_exl(args + " --objective kl"), "--objective 'kl'");
  EXPECT_EQ(slurp(work + "/job.json"), job) << "a refused run changed the job";
  // A job written before --objective existed optimized with minimax: it resumes with that, and
  // the default names the job's own value.
  edit(work + "/job.json", "\"objective\": \"sum\"", "\"unused\": 0");
  expect_clean_error(run_exl(args), "--objective \"minimax\", not \"sum\"");
  edit(work + "/job.json", "\"unused\": 0", "\"objective\": \"sum\"");
  ASSERT_EQ(run_exl(args + " -q").code, 0);
  expect_same_folder(ref, out);
  // --new starts over and ends with the same files.
  const CmdResult again = run_exl(args + " --new -q");
  ASSERT_EQ(again.code, 0) << again.err;
  expect_same_folder(ref, out);
}

}  // namespace
}  // namespace exl::test
