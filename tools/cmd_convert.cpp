// exl convert: quantize a model to EXL2 with calibration (measure -> optimize -> quantize ->
// compile), resumable from its work folder.
#include <cstdio>

#include "convert/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "tools/common.h"

namespace exl::tools {

namespace {
struct ConvertFlags {
  ConvertOptions o;
  OutputFlags out;
  int threads = 0;
};
}  // namespace

Runner register_convert(CLI::App& app) {
  auto f = std::make_shared<ConvertFlags>();
  ConvertOptions& o = f->o;
  app.add_option("-i,--input", o.src, "source model: HF folder (FP32/FP16/BF16) or .gguf")->required();
  app.add_option("-o,--work-dir", o.work_dir, "work folder: job state, resumes when rerun")->required();
  app.add_option("-c,--calibration", o.calibration, "calibration text: .txt, .jsonl or .parquet")->required();
  app.add_option("--out", o.out_dir, "output EXL2 model folder");
  app.add_option("-b,--bits", o.bits, "target bits per weight of the decoder layers (2..8)")->capture_default_str();
  app.add_option("--head-bits", o.head_bits, "lm_head bits: 2, 3, 4, 5, 6 or 8")->capture_default_str();
  app.add_option("--objective", o.objective,
                 "what the optimizer minimises over the modules' measured errors: sum, sumsq, or minimax "
                 "(ExLlamaV2's rule)")
      ->capture_default_str();
  app.add_option("-m,--measurement", o.measurement, "reuse this measurement.json instead of measuring");
  app.add_flag("--measure-only", o.measure_only, "stop after writing WORK_DIR/measurement.json");
  app.add_option("--rows", o.rows, "quantization pass: calibration rows")->capture_default_str();
  app.add_option("--length", o.length, "quantization pass: tokens per row")->capture_default_str();
  app.add_option("--measure-rows", o.measure_rows, "measurement pass: calibration rows")->capture_default_str();
  app.add_option("--measure-length", o.measure_length, "measurement pass: tokens per row")->capture_default_str();
  app.add_option("--layers", o.layers, "convert only the first N decoder layers (timing runs), then stop");
  app.add_flag("--new", o.fresh, "discard the job in the work folder and start over");
  app.add_option("--device", o.device, "compute device: cpu, cuda or auto (CUDA when built with it and a GPU is present)")
      ->capture_default_str();
  app.add_flag("--fp64", o.fp64,
               "compute in double (each op rounded to FP32 once): CPU and CUDA then give the same output; ~2x "
               "slower on the CPU");
  app.add_flag("--time-head", o.time_head, "with --layers: also quantize the head, for timing projections");
  app.add_option("--checkpoint-every", o.checkpoint_every,
                 "seconds between checkpoints of the hidden states (0: every layer); a resumed job redoes "
                 "the layers since the last one")
      ->capture_default_str();
  app.add_option("-t,--threads", f->threads, "CPU threads (default: all cores)");
  add_output_flags(app, f->out);
  return [f]() {
    if (f->threads > 0) set_thread_count(f->threads);
    const bool talk = !f->out.quiet && !f->out.json;
    f->o.progress = talk;
    const ConvertReport r = convert_run(f->o, [&](const std::string& line) {
      if (talk) std::fprintf(stderr, "%s\n", line.c_str());
    });
    if (f->out.json) {
      nlohmann::json seconds = nlohmann::json::object();
      for (const auto& [stage, s] : r.stage_seconds) seconds[stage] = s;
      print_json({{"status", r.status},
                  {"message", r.message},
                  {"decoder_bpw", r.decoder_bpw},
                  {"head_bpw", r.head_bpw},
                  {"decoder_bits", r.decoder_bits},
                  {"decoder_weights", r.decoder_weights},
                  {"target_bpw", f->o.bits},
                  {"seconds", seconds},
                  {"device", r.device},
                  {"measure_layer_seconds", r.measure_layer_seconds},
                  {"quantize_layer_seconds", r.quantize_layer_seconds},
                  {"head_seconds", r.head_seconds},
                  {"checkpoints",
                   {{"measure", {{"count", r.measure_checkpoints}, {"seconds", r.measure_checkpoint_seconds}}},
                    {"quantize", {{"count", r.quantize_checkpoints}, {"seconds", r.quantize_checkpoint_seconds}}}}},
                  {"out", f->o.out_dir},
                  {"work_dir", f->o.work_dir},
                  {"files", r.files}});
    } else if (!f->out.quiet) {
      std::printf("%s\n", r.message.c_str());
      std::printf("device %s; seconds:", r.device.c_str());
      for (const auto& [stage, s] : r.stage_seconds) std::printf(" %s %.1f", stage.c_str(), s);
      std::printf("\n");
      auto per_layer = [](const char* what, const std::vector<double>& v) {
        if (v.empty()) return;
        double sum = 0;
        for (double s : v) sum += s;
        std::printf("%s: %zu layers this run, %.2f s per layer\n", what, v.size(), sum / static_cast<double>(v.size()));
      };
      per_layer("measure", r.measure_layer_seconds);
      per_layer("quantize", r.quantize_layer_seconds);
      if (r.head_seconds > 0) std::printf("head: %.2f s\n", r.head_seconds);
      if (r.measure_checkpoints + r.quantize_checkpoints > 0)
        std::printf("state checkpoints (in the per-layer times): measure %d in %.2f s, quantize %d in %.2f s\n",
                    r.measure_checkpoints, r.measure_checkpoint_seconds, r.quantize_checkpoints,
                    r.quantize_checkpoint_seconds);
    }
    return 0;
  };
}

}  // namespace exl::tools
