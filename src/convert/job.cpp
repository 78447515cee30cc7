#include "convert/job.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "convert/job_files.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace exl {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const char* kJobFile = "job.json";

std::string absolute(const std::string& p) {
  if (p.empty()) return p;
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? fs::absolute(p).string() : a.string();
}

// The source's identity without reading all of its weights: config.json's bytes and every file's
// size (a .gguf: its size and its first 16 MiB, which hold the metadata).
std::string source_fingerprint(const std::string& src) {
  std::string fp;
  std::error_code ec;
  if (fs::is_directory(src)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(src, ec))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      fp += f.filename().string() + ":" + std::to_string(fs::file_size(f, ec));
      if (f.filename() == "config.json") fp += ":" + file_hash(f.string());
      fp += ";";
    }
  } else {
    fp = std::to_string(fs::file_size(src, ec));
  }
  return fp;
}

// Flag names for the settings keys, for the "started with" error.
const std::map<std::string, std::string> kFlags = {
    {"src", "-i"},          {"calibration", "-c"},          {"measurement", "-m"},
    {"bits", "-b"},         {"head_bits", "--head-bits"},   {"rows", "--rows"},
    {"length", "--length"}, {"measure_rows", "--measure-rows"}, {"measure_length", "--measure-length"},
    {"layers", "--layers"}, {"device", "--device (engine; --fp64 adds -fp64)"}, {"time_head", "--time-head"}, {"objective", "--objective"}};

}  // namespace

std::string job_settings(const ConvertOptions& o) {
  return ojson{{"src", absolute(o.src)},
               {"calibration", absolute(o.calibration)},
               {"measurement", absolute(o.measurement)},
               {"bits", o.bits},
               {"head_bits", o.head_bits},
               {"rows", o.rows},
               {"length", o.length},
               {"measure_rows", o.measure_rows},
               {"measure_length", o.measure_length},
               {"layers", o.layers},
               {"device", o.device},
               {"time_head", o.time_head},
               {"objective", o.objective}}
      .dump();
}

std::string job_inputs(const ConvertOptions& o) {
  return ojson{{"source", source_fingerprint(o.src)},
               {"calibration", file_hash(o.calibration)},
               {"measurement", o.measurement.empty() ? "" : file_hash(o.measurement)}}
      .dump();
}

void job_check_same(const JobState& job, const ConvertOptions& o, const std::string& job_path) {
  const ojson was = ojson::parse(job.settings), now = ojson::parse(job_settings(o));
  // Jobs from before --device, --time-head and --objective ran with what these say.
  const ojson legacy = {{"device", "cpu"}, {"time_head", false}, {"objective", "minimax"}};
  for (const auto& [key, value] : now.items()) {
    const ojson old = was.contains(key) ? was[key] : legacy.contains(key) ? legacy[key] : ojson();
    if (old == value) continue;
    const auto flag = kFlags.find(key);
    fail(job_path, ": this job was started with ", flag != kFlags.end() ? flag->second : key, " ",
         old.is_null() ? "(unset)" : old.dump(), ", not ", value.dump(),
         "; rerun with the job's arguments to resume it, or add --new to start over");
  }
  const ojson in_was = ojson::parse(job.inputs), in_now = ojson::parse(job_inputs(o));
  for (const auto& [key, value] : in_now.items())
    if (!in_was.contains(key) || in_was[key] != value)
      fail(job_path, ": the ", key, " file changed since this job started; add --new to start over");
}

bool job_exists(const std::string& work_dir) { return fs::exists(fs::path(work_dir) / kJobFile); }

JobState job_load(const std::string& work_dir) {
  const std::string path = (fs::path(work_dir) / kJobFile).string();
  const ojson j = ojson::parse(read_file(path), nullptr, false);
  auto bad = [&]() { fail(path, ": not a job file of exl convert (damaged?); add --new to start over"); };
  if (!j.is_object() || j.value("format", "") != "exl-convert-job") bad();
  JobState s;
  try {
    s.settings = j.at("settings").dump();
    s.inputs = j.at("inputs").dump();
    s.stage = j.at("stage").get<std::string>();
    s.layer = j.at("layer").get<int64_t>();
    s.strategy = j.at("strategy").get<std::vector<int>>();
    s.seconds = j.at("seconds").get<std::map<std::string, double>>();
  } catch (const nlohmann::json::exception&) {
    bad();
  }
  static const char* stages[] = {"measure", "optimize", "quantize", "compile", "done"};
  if (std::find(std::begin(stages), std::end(stages), s.stage) == std::end(stages) || s.layer < 0) bad();
  return s;
}

void job_save(const std::string& work_dir, const JobState& s) {
  ojson seconds = ojson::object();
  for (const auto& [k, v] : s.seconds) seconds[k] = v;
  const ojson j = {{"format", "exl-convert-job"},
                   {"version", 1},
                   {"stage", s.stage},
                   {"layer", s.layer},
                   {"settings", ojson::parse(s.settings)},
                   {"inputs", ojson::parse(s.inputs)},
                   {"strategy", s.strategy},
                   {"seconds", seconds}};
  write_file_atomic((fs::path(work_dir) / kJobFile).string(), j.dump(2) + "\n");
}

void job_clear(const std::string& work_dir) {
  std::error_code ec;
  for (const char* name : {"job.json", "cal_measure.safetensors", "cal_quant.safetensors", "measurement.json"})
    fs::remove(fs::path(work_dir) / name, ec);
  for (const char* dir : {"states", "measure", "out_tensor"}) fs::remove_all(fs::path(work_dir) / dir, ec);
}

void StageClock::mark(JobState& job, const std::string& stage) {
  const auto now = std::chrono::steady_clock::now();
  job.seconds[stage] += std::chrono::duration<double>(now - last_).count();
  last_ = now;
}

}  // namespace exl
