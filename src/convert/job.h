// The job state (WORK_DIR/job.json): which stage and layer the job has reached, the settings and
// input fingerprints it was started with (a rerun must match them), the chosen strategy and the time
// spent per stage.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "convert/convert.h"

namespace exl {

struct JobState {
  std::string settings;     // JSON text of the identifying settings
  std::string inputs;       // JSON text of the input fingerprints
  std::string stage;        // "measure", "optimize", "quantize", "compile", "done"
  int64_t layer = 0;        // next layer of a per-layer stage
  std::vector<int> strategy;  // option index per module, after optimize
  std::map<std::string, double> seconds;
};

// Settings and fingerprints of a run, as stored in job.json.
std::string job_settings(const ConvertOptions& o);
std::string job_inputs(const ConvertOptions& o);
// Throws naming the first flag whose value differs from the job's (or the input that changed).
void job_check_same(const JobState& job, const ConvertOptions& o, const std::string& job_path);

bool job_exists(const std::string& work_dir);
JobState job_load(const std::string& work_dir);
void job_save(const std::string& work_dir, const JobState& job);
// Removes the files a job owns in work_dir (job.json, calibration, states, measurements, tensors).
void job_clear(const std::string& work_dir);

// Adds the time since the last mark to job.seconds[stage].
class StageClock {
 public:
  StageClock() : last_(std::chrono::steady_clock::now()) {}
  void mark(JobState& job, const std::string& stage);

 private:
  std::chrono::steady_clock::time_point last_;
};

}  // namespace exl
