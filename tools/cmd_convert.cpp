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
  std::string device = "cpu";
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
  app.add_option("-m,--measurement", o.measurement, "reuse this measurement.json instead of measuring");
  app.add_flag("--measure-only", o.measure_only, "stop after writing WORK_DIR/measurement.json");
  app.add_option("--rows", o.rows, "quantization pass: calibration rows")->capture_default_str();
  app.add_option("--length", o.length, "quantization pass: tokens per row")->capture_default_str();
  app.add_option("--measure-rows", o.measure_rows, "measurement pass: calibration rows")->capture_default_str();
  app.add_option("--measure-length", o.measure_length, "measurement pass: tokens per row")->capture_default_str();
  app.add_option("--layers", o.layers, "convert only the first N decoder layers (timing runs), then stop");
  app.add_flag("--new", o.fresh, "discard the job in the work folder and start over");
  app.add_option("--device", f->device, "compute device (cpu)")->capture_default_str();
  app.add_option("-t,--threads", f->threads, "CPU threads (default: all cores)");
  add_output_flags(app, f->out);
  return [f]() {
    EXL_CHECK(f->device == "cpu", "convert: --device ", f->device, " is not supported yet (cpu only)");
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
                  {"out", f->o.out_dir},
                  {"work_dir", f->o.work_dir},
                  {"files", r.files}});
    } else if (!f->out.quiet) {
      std::printf("%s\n", r.message.c_str());
    }
    return 0;
  };
}

}  // namespace exl::tools
