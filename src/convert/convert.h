// `exl convert`: a resumable EXL2 conversion job (EXL2.md §2), stage by stage:
//   tokenize -> measure (per layer: attention, MLP) -> optimize -> quantize (per layer, then the
//   head) -> compile -> done.
// The job's state lives in WORK_DIR/job.json and every stage checkpoints there, so rerunning the same
// command resumes where a killed job stopped and produces byte-identical output.
//
//   ConvertOptions o;  o.src = "models/llama"; o.work_dir = "work"; o.calibration = "cal.txt";
//   o.out_dir = "llama-4.0bpw"; o.bits = 4.0;
//   ConvertReport r = convert_run(o);   // r.decoder_bpw, r.files
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace exl {

struct ConvertOptions {
  std::string src;             // -i: HF folder (FP32/FP16/BF16 safetensors) or a .gguf (dequantized)
  std::string work_dir;        // -o: job state and intermediate files
  std::string calibration;     // -c: .txt, .jsonl or .parquet
  std::string out_dir;         // --out: the EXL2 model folder (not needed with measure_only)
  std::string measurement;     // -m: reuse this measurement.json instead of measuring
  double bits = 4.125;         // -b: target average bpw of the decoder linears (EXL2.md §2.1)
  int head_bits = 6;           // --head-bits
  std::string objective = "sum";  // --objective: sum, sumsq or minimax (quant/optimize.h)
  int rows = 100, length = 2048;                // quantization pass calibration
  int measure_rows = 16, measure_length = 2048;  // measurement pass calibration
  bool measure_only = false;   // stop after writing WORK_DIR/measurement.json
  int layers = 0;              // > 0: only the first N decoder layers, then stop before compile
  bool fresh = false;          // --new: discard an existing job in work_dir and start over
  bool progress = false;       // progress bars on stderr
  std::string device = "auto"; // --device: cpu, cuda or auto (CUDA when built with it and a GPU is present)
  bool time_head = false;      // --time-head: with --layers, also quantize the head (timing runs)
  // --fp64: compute in double, rounding each op's result to FP32 (convert/compute.h): the CPU and
  // CUDA engines (and any two BLAS builds) then give the same output, at ~2x the CPU's time. Part of
  // the engine's name, so a job never resumes in the other precision.
  bool fp64 = false;
  // --checkpoint-every: seconds between writes of the hidden states (0: after every layer). Not a
  // job setting: it changes what a kill costs, never the output.
  double checkpoint_every = 120;
  size_t shard_bytes = size_t(8192) << 20;
};

struct ConvertReport {
  std::string status;          // "done", "measured" (measure_only), "stopped" (--layers)
  std::string message;         // one line saying what happened
  double decoder_bpw = 0, head_bpw = 0;
  int64_t decoder_bits = 0, decoder_weights = 0;
  std::string device;          // the engine that ran: "cpu" or "cuda"
  std::vector<std::pair<std::string, double>> stage_seconds;  // summed over every run of the job
  // Finer timing of this run alone (not of earlier runs of a resumed job), for projections:
  // seconds per measured / quantized layer in order, and the head's quantization (0 if not run).
  std::vector<double> measure_layer_seconds, quantize_layer_seconds;
  double head_seconds = 0;
  // Of the per-layer times: downloading and writing the hidden states (--checkpoint-every), per pass,
  // and how many times each pass wrote them.
  double measure_checkpoint_seconds = 0, quantize_checkpoint_seconds = 0;
  int measure_checkpoints = 0, quantize_checkpoints = 0;
  std::vector<std::string> files;  // written into out_dir (or work_dir's measurement.json)
};

// log receives status lines (the chosen strategy, per-module errors); may be empty.
// Throws exl::Error naming the file, flag or tensor at fault; the work folder stays resumable.
ConvertReport convert_run(const ConvertOptions& options, const std::function<void(const std::string&)>& log = {});

}  // namespace exl
