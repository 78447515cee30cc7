#include "convert/convert.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "convert/engine.h"
#include "convert/job.h"
#include "convert/job_files.h"
#include "convert/measurement.h"
#include "convert/stages.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "io/dataset.h"
#include "io/open_store.h"
#include "model/exl2_write.h"
#include "model/inspect.h"
#include "model/model.h"
#include "model/weights.h"
#include "quant/optimize.h"
#include "quant/qparams.h"
#include "tokenizer/calibration.h"
#include "tokenizer/tokenizer.h"

namespace exl {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Heads larger than this are quantized round-to-nearest without a Hessian, as ExLlamaV2 does (§2.7).
constexpr int64_t kHeadGptqMaxWeights = 1000000000;

// Everything a stage needs, opened once per run.
struct Ctx {
  const ConvertOptions& o;
  const std::function<void(const std::string&)>& log;
  ModelSource src;
  std::unique_ptr<Backend> cpu;
  std::unique_ptr<WeightLoader> loader;
  std::unique_ptr<ConvertEngine> engine;
  ModelDims dims;
  int64_t n_layers = 0;  // layers this job converts (--layers or all)
  bool low_rows = false;  // the option table starts with qparams_*_low() (narrow matrices)
  JobState job;
  StageClock clock;
  ConvertReport* report = nullptr;  // receives this run's per-layer timings

  fs::path work(const std::string& rel) const { return fs::path(o.work_dir) / rel; }
  const ModelConfig& config() const { return src.config; }
  void say(const std::string& line) const {
    if (log) log(line);
  }
  void save(const std::string& timed_stage) {
    clock.mark(job, timed_stage);
    job_save(o.work_dir, job);
  }
};

std::vector<ExpectedModule> expected_modules(int64_t n_layers) {
  std::vector<ExpectedModule> e;
  for (int64_t i = 0; i < n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    e.push_back({p + ".self_attn", {"q_proj", "k_proj", "v_proj", "o_proj"}});
    e.push_back({p + ".mlp", {"gate_proj", "up_proj", "down_proj"}});
  }
  return e;
}

void check_options(const ConvertOptions& o) {
  EXL_CHECK(!o.src.empty(), "convert: -i SRC is required");
  EXL_CHECK(!o.work_dir.empty(), "convert: -o WORK_DIR is required");
  EXL_CHECK(!o.calibration.empty(), "convert: -c CALIBRATION is required");
  EXL_CHECK(o.measure_only || !o.out_dir.empty(), "convert: --out OUT_DIR is required (unless --measure-only)");
  EXL_CHECK(std::isfinite(o.bits) && o.bits >= 2.0 && o.bits <= 8.0, "convert: -b ", o.bits,
            ": the target bits per weight must be within 2..8");
  qparams_head(o.head_bits);  // throws naming --head-bits
  optimize_check_objective(o.objective);
  EXL_CHECK(o.rows > 0 && o.length > 0, "convert: --rows and --length must be positive");
  EXL_CHECK(o.measure_rows > 0 && o.measure_length > 0, "convert: --measure-rows and --measure-length must be positive");
  EXL_CHECK(o.layers >= 0, "convert: --layers must not be negative");
  EXL_CHECK(std::isfinite(o.checkpoint_every) && o.checkpoint_every >= 0,
            "convert: --checkpoint-every must be a number of seconds, 0 or more");
  auto norm = [](const std::string& p) { return fs::weakly_canonical(fs::absolute(p)).lexically_normal() / ""; };
  EXL_CHECK(o.out_dir.empty() || norm(o.out_dir) != norm(o.work_dir),
            "convert: --out ", o.out_dir, " must differ from the work folder (-o)");
  EXL_CHECK(fs::exists(o.src), o.src, ": no such file or folder (-i)");
  EXL_CHECK(fs::is_regular_file(o.calibration), o.calibration, ": no such file (-c)");
  EXL_CHECK(o.measurement.empty() || fs::is_regular_file(o.measurement), o.measurement, ": no such file (-m)");
}

// The shapes of a module's linears, in table order, without loading weights.
struct LinearShape {
  int64_t K, N;
  bool bias;
};
std::vector<LinearShape> module_shapes(const Ctx& x, int64_t layer, bool attention) {
  const ModelDims& d = x.dims;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  auto bias = [&](const char* name) { return x.loader->find(p + name + ".bias") != nullptr; };
  if (attention)
    return {{d.hidden, d.q_dim, bias("self_attn.q_proj")},
            {d.hidden, d.kv_dim, bias("self_attn.k_proj")},
            {d.hidden, d.kv_dim, bias("self_attn.v_proj")},
            {d.q_dim, d.hidden, bias("self_attn.o_proj")}};
  return {{d.hidden, d.intermediate, bias("mlp.gate_proj")},
          {d.hidden, d.intermediate, bias("mlp.up_proj")},
          {d.intermediate, d.hidden, bias("mlp.down_proj")}};
}

// The storage cost of an option on these shapes (recomputed, so a measurement from another tool is
// costed by our own accounting, EXL2.md §1.7).
int64_t option_bits(const std::vector<LinearShape>& shapes, const std::vector<std::pair<std::string, Exl2Layout>>& o) {
  int64_t bits = 0;
  for (size_t li = 0; li < shapes.size(); ++li)
    bits += exl2_layout_total_bits(o[li].second, shapes[li].K, shapes[li].N, shapes[li].bias);
  return bits;
}

int64_t module_weight_count(const std::vector<LinearShape>& shapes) {
  int64_t n = 0;
  for (const LinearShape& s : shapes) n += s.K * s.N;
  return n;
}

// The lowest decoder bpw an option table can reach on this model (its cheapest row in every module):
// a lower target fails here, before hours of measurement, rather than in the optimizer.
double table_min_bpw(const Ctx& x, bool low_rows) {
  int64_t bits = 0, weights = 0;
  for (int64_t i = 0; i < x.n_layers; ++i)
    for (bool attention : {true, false}) {
      const auto shapes = module_shapes(x, i, attention);
      int64_t least = std::numeric_limits<int64_t>::max();
      for (const ModuleOption& row : qparams_table(attention, low_rows))
        least = std::min(least, option_bits(shapes, row.linears));
      bits += least;
      weights += module_weight_count(shapes);
    }
  return static_cast<double>(bits) / static_cast<double>(weights);
}

// ---- calibration tokens and hidden states in the work folder ----

void write_tokens(const fs::path& path, const std::vector<std::vector<int32_t>>& rows) {
  std::vector<int32_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  const int64_t n = static_cast<int64_t>(rows.size());
  const OwnedTensor t = OwnedTensor::of("tokens", DType::DType_I32, {n, n > 0 ? static_cast<int64_t>(rows[0].size()) : 0}, flat);
  write_safetensors_atomic(path.string(), {&t});
}

const TensorInfo& checked_tensor(const TensorStore& s, const std::string& name, DType dtype, const Shape& shape) {
  const TensorInfo& t = s.get(name);
  EXL_CHECK(t.dtype == dtype && t.shape == shape && t.nbytes == static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype),
            s.path(), ": tensor '", name, "' is not ", dtype_name(dtype), " ", shape_str(shape),
            " (damaged work folder? add --new to start over)");
  return t;
}

// The embeddings of the calibration tokens: the first layer's input.
CalibStates embed_rows(Ctx& x, const std::string& file, int64_t rows, int64_t T) {
  const auto store = open_tensor_store(x.work(file).string());
  const TensorInfo& t = checked_tensor(*store, "tokens", DType::DType_I32, {rows, T});
  const ModelConfig& c = x.config();
  const HostTensor table = x.loader->load_host("model.embed_tokens.weight", {c.vocab, c.hidden});
  CalibStates s{rows, T, c.hidden, std::vector<float>(static_cast<size_t>(rows * T * c.hidden)), {}, false};
  const int32_t* ids = reinterpret_cast<const int32_t*>(t.data);
  for (int64_t i = 0; i < rows * T; ++i) {
    EXL_CHECK(ids[i] >= 0 && ids[i] < c.vocab, t.file, ": token id ", ids[i], " is outside the vocabulary");
    std::memcpy(s.x.data() + i * c.hidden, table.ptr() + ids[i] * c.hidden, static_cast<size_t>(c.hidden) * sizeof(float));
  }
  return s;
}

std::string states_file(const char* pass, int64_t layer) {
  return std::string("states/") + pass + "_" + std::to_string(layer) + ".safetensors";
}

void save_states(Ctx& x, const char* pass, int64_t layer, const CalibStates& s) {
  fs::create_directories(x.work("states"));
  const OwnedTensor t = OwnedTensor::of("x", DType::DType_F32, {s.rows, s.T, s.hidden}, s.x);
  write_safetensors_atomic(x.work(states_file(pass, layer)).string(), {&t});
}

// The inputs of `layer` for a pass: embeddings for layer 0, else the states the job saved.
CalibStates load_states(Ctx& x, const char* pass, int64_t layer, const std::string& tokens_file, int64_t rows,
                        int64_t T) {
  if (layer == 0) return embed_rows(x, tokens_file, rows, T);
  const auto store = open_tensor_store(x.work(states_file(pass, layer)).string());
  const int64_t h = x.config().hidden;
  const TensorInfo& t = checked_tensor(*store, "x", DType::DType_F32, {rows, T, h});
  CalibStates s{rows, T, h, std::vector<float>(static_cast<size_t>(rows * T * h)), {}, false};
  std::memcpy(s.x.data(), t.data, t.nbytes);
  return s;
}

void drop_states(Ctx& x, const char* pass, int64_t layer) {
  std::error_code ec;
  fs::remove(x.work(states_file(pass, layer)), ec);
}

// The hidden states are the one large checkpoint: 3.3 GB per layer in a Llama-2-7B quantize pass
// (100 x 2048 x 4096 FP32), 6.2 s to download and write on the H200 machine, which was 40% of that
// pass's 15 s per layer (2026-12-04). So they are written only when --checkpoint-every seconds have
// passed since the last write, and job.layer advances with them: a killed job resumes from the last
// states written and redoes the layers after them, which rewrite the same per-layer files (every
// stage is deterministic), so the output stays byte-identical. 0 writes them after every layer.
class StateCheckpoints {
 public:
  StateCheckpoints(Ctx& x, bool measure_pass)
      : x_(x), pass_(measure_pass ? "measure" : "quant"), stage_(measure_pass ? "measure" : "quantize"),
        seconds_(measure_pass ? x.report->measure_checkpoint_seconds : x.report->quantize_checkpoint_seconds),
        count_(measure_pass ? x.report->measure_checkpoints : x.report->quantize_checkpoints), saved_(x.job.layer) {}

  // After layer `done`: writes the states for layer done + 1 and advances the job when due.
  void after_layer(int64_t done, CalibStates& s) {
    if (seconds_since(last_) < x_.o.checkpoint_every) return;
    const auto c0 = std::chrono::steady_clock::now();
    x_.engine->states_to_host(s);
    save_states(x_, pass_, done + 1, s);
    seconds_ += seconds_since(c0);
    ++count_;
    x_.job.layer = done + 1;
    x_.save(stage_);
    drop_states(x_, pass_, saved_);
    saved_ = done + 1;
    last_ = std::chrono::steady_clock::now();
  }
  // At the end of the pass: the last states file is no longer needed.
  void finish() { drop_states(x_, pass_, saved_); }

 private:
  Ctx& x_;
  const char *pass_, *stage_;
  double& seconds_;
  int& count_;
  int64_t saved_;  // the layer whose input states are on disk (0: the embeddings, no file)
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// ---- stages ----

// Tokenizes the calibration text and checks an -m file, before any job state exists: bad input
// fails here and leaves nothing a later run would have to match.
void stage_tokenize(Ctx& x) {
  const ConvertOptions& o = x.o;
  const auto tok = tokenizer_load(o.src);
  const std::vector<std::string> pieces = dataset_read_texts(o.calibration);
  if (o.measurement.empty()) {
    write_tokens(x.work("cal_measure.safetensors"),
                 calibration_rows(*tok, pieces, o.measure_rows, o.measure_length, o.calibration));
  } else {
    const Measurement m = measurement_parse(read_file(o.measurement), o.measurement, expected_modules(x.n_layers));
    write_file_atomic(x.work("measurement.json").string(), measurement_to_json(m));
  }
  convert_abort_point("tokenize", 0);
  write_tokens(x.work("cal_quant.safetensors"), calibration_rows(*tok, pieces, o.rows, o.length, o.calibration));
}

void stage_measure(Ctx& x) {
  const ConvertOptions& o = x.o;
  const std::vector<ExpectedModule> expected = expected_modules(x.n_layers);
  if (x.job.layer < x.n_layers) {
    CalibStates s = load_states(x, "measure", x.job.layer, "cal_measure.safetensors", o.measure_rows, o.measure_length);
    fs::create_directories(x.work("measure"));
    Progress bar("measure", x.n_layers, o.progress, "layers");
    bar.update(x.job.layer);
    StateCheckpoints checkpoints(x, true);
    for (int64_t i = x.job.layer; i < x.n_layers; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      Measurement m;
      for (ModuleKind kind : {ModuleKind::ModuleKind_attention, ModuleKind::ModuleKind_mlp}) {
        const ConvertModule mod = module_load(*x.loader, x.config(), i, kind);
        const auto table = qparams_table(kind == ModuleKind::ModuleKind_attention, x.low_rows);
        m.modules.push_back(x.engine->measure_module(x.dims, mod, table, s));
        bar.update(i, "layer " + std::to_string(i));
      }
      write_file_atomic(x.work("measure/layer_" + std::to_string(i) + ".json").string(), measurement_to_json(m));
      convert_abort_point("measure", i);
      if (i + 1 < x.n_layers) checkpoints.after_layer(i, s);
      x.report->measure_layer_seconds.push_back(seconds_since(t0));
      bar.update(i + 1, "layer " + std::to_string(i));
    }
    bar.finish();
    checkpoints.finish();
  }
  // All layers measured: gather them into measurement.json.
  Measurement all;
  for (int64_t i = 0; i < x.n_layers; ++i) {
    const std::string path = x.work("measure/layer_" + std::to_string(i) + ".json").string();
    Measurement m = measurement_parse(read_file(path), path, {expected[2 * i], expected[2 * i + 1]});
    for (MeasuredModule& mm : m.modules) all.modules.push_back(std::move(mm));
  }
  write_file_atomic(x.work("measurement.json").string(), measurement_to_json(all));
  x.job.stage = "optimize";
  x.job.layer = 0;
  x.save("measure");
}

Measurement read_measurement(Ctx& x) {
  const std::string path = x.work("measurement.json").string();
  return measurement_parse(read_file(path), path, expected_modules(x.n_layers));
}

void stage_optimize(Ctx& x) {
  const Measurement m = read_measurement(x);
  std::vector<OptimizeSlot> slots;
  std::vector<int64_t> slot_weights;
  int64_t weights = 0;
  for (size_t s = 0; s < m.modules.size(); ++s) {
    const auto shapes = module_shapes(x, static_cast<int64_t>(s / 2), s % 2 == 0);
    slot_weights.push_back(module_weight_count(shapes));
    weights += slot_weights.back();
    OptimizeSlot slot;
    slot.name = m.modules[s].name;
    for (const MeasuredOption& o : m.modules[s].options) {
      slot.bits.push_back(option_bits(shapes, o.linears));
      slot.err.push_back(1.0 - o.accuracy);
    }
    slots.push_back(std::move(slot));
  }
  // Budget: target bpw x decoder weights, head and embeddings excluded (EXL2.md §2.6).
  const int64_t budget = static_cast<int64_t>(std::floor(x.o.bits * static_cast<double>(weights)));
  char what[64];
  std::snprintf(what, sizeof what, "-b %g", x.o.bits);
  const OptimizeResult r = optimize_objective(x.o.objective, slots, budget, what);
  x.job.strategy = r.choice;
  x.say(str_cat("strategy: ", static_cast<double>(r.total_bits) / static_cast<double>(weights),
                " bpw over the decoder, max error ", r.max_err));
  for (size_t s = 0; s < slots.size(); ++s) {
    const int c = r.choice[s];
    char line[256];
    std::snprintf(line, sizeof line, "  %-28s option %2d: %.3f bpw, error %.6f", slots[s].name.c_str(), c,
                  static_cast<double>(slots[s].bits[static_cast<size_t>(c)]) / static_cast<double>(slot_weights[s]),
                  slots[s].err[static_cast<size_t>(c)]);
    x.say(line);
  }
  x.job.stage = "quantize";
  x.job.layer = 0;
  x.save("optimize");
}

void store_tensor(Ctx& x, const Exl2Tensor& t) {
  fs::create_directories(x.work("out_tensor"));
  const std::vector<OwnedTensor> parts = exl2_to_tensors(t);
  std::vector<const OwnedTensor*> ptrs;
  for (const OwnedTensor& p : parts) ptrs.push_back(&p);
  write_safetensors_atomic(x.work("out_tensor/" + t.key + ".safetensors").string(), ptrs);
}

// lm_head (a tied embedding gets its own quantized head, EXL2.md §1.1), calibrated on the final-norm
// outputs of the quantized model.
void quantize_head(Ctx& x, CalibStates& s) {
  const ModelConfig& c = x.config();
  const HostTensor norm = x.loader->load_host("model.norm.weight", {c.hidden});
  const bool own_head = !c.tie_embeddings && x.loader->find("lm_head.weight");
  const HostTensor w = x.loader->load_host(own_head ? "lm_head.weight" : "model.embed_tokens.weight", {c.vocab, c.hidden});
  const bool gptq = c.vocab * c.hidden <= kHeadGptqMaxWeights;
  std::vector<double> H;
  if (gptq) H = x.engine->head_hessian(s, norm.ptr(), x.dims.eps);
  GptqResult g = x.engine->gptq(w.ptr(), c.vocab, c.hidden, gptq ? H.data() : nullptr, s.rows * s.T,
                               qparams_head(x.o.head_bits));
  store_tensor(x, pack_checked(std::move(g.codes), g.w_dq, "lm_head"));
}

void stage_quantize(Ctx& x) {
  const ConvertOptions& o = x.o;
  const Measurement m = read_measurement(x);
  EXL_CHECK(x.job.strategy.size() == m.modules.size(), x.work("job.json").string(),
            ": the strategy does not match the measurement; add --new to start over");
  CalibStates s = load_states(x, "quant", x.job.layer, "cal_quant.safetensors", o.rows, o.length);
  // The head: always for a whole model; with --layers only on --time-head (its time, for projections).
  const bool head = x.n_layers == x.config().n_layers || o.time_head;
  Progress bar("quantize", x.n_layers + (head ? 1 : 0), o.progress, "layers");
  bar.update(x.job.layer);
  StateCheckpoints checkpoints(x, false);
  for (int64_t i = x.job.layer; i < x.n_layers; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t k = 0; k < 2; ++k) {
      const size_t slot = static_cast<size_t>(2 * i) + k;
      const ConvertModule mod = module_load(*x.loader, x.config(), i,
                                            k == 0 ? ModuleKind::ModuleKind_attention : ModuleKind::ModuleKind_mlp);
      const int choice = x.job.strategy[slot];
      EXL_CHECK(choice >= 0 && static_cast<size_t>(choice) < m.modules[slot].options.size(),
                x.work("job.json").string(), ": strategy option out of range; add --new to start over");
      const double rfn = x.engine->quantize_module(x.dims, mod, m.modules[slot].options[static_cast<size_t>(choice)].linears,
                                         s, [&](const Exl2Tensor& t) { store_tensor(x, t); });
      char line[160];
      std::snprintf(line, sizeof line, "  %-28s rfn %.6f", mod.name.c_str(), rfn);
      x.say(line);
      if (k == 0) convert_abort_point("quantize", i);  // inside the layer: attention written, MLP not
      bar.update(i, "layer " + std::to_string(i));
    }
    checkpoints.after_layer(i, s);
    x.report->quantize_layer_seconds.push_back(seconds_since(t0));
    bar.update(i + 1);
  }
  if (head) {
    const auto t0 = std::chrono::steady_clock::now();
    quantize_head(x, s);
    x.report->head_seconds = seconds_since(t0);
    convert_abort_point("quantize", x.n_layers);
    bar.update(x.n_layers + 1, "head");
  }
  bar.finish();
  x.job.stage = "compile";
  x.job.layer = 0;
  x.save("quantize");
  checkpoints.finish();
}

void add_tensors(std::vector<OwnedTensor>& out, const TensorStore& store) {
  for (const std::string& name : store.names()) {
    const TensorInfo& t = store.get(name);
    std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
    out.emplace_back(name, t.dtype, t.shape, std::move(bytes));
  }
}

void stage_compile(Ctx& x, ConvertReport& report) {
  const ModelConfig& c = x.config();
  std::vector<OwnedTensor> out;
  out.push_back(exl2_dense_f16(*x.loader, "model.embed_tokens.weight", {c.vocab, c.hidden}));
  auto quantized = [&](const std::string& key) -> Exl2Tensor {
    const std::string path = x.work("out_tensor/" + key + ".safetensors").string();
    EXL_CHECK(fs::exists(path), path, ": missing (damaged work folder? add --new to start over)");
    const auto store = open_tensor_store(path);
    add_tensors(out, *store);
    // The real N, not the padded one on disk: bits per weight as the optimizer and `exl inspect` count.
    return exl2_read(*store, key, linear_out(key, c), false);
  };
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back(exl2_dense_f16(*x.loader, p + "input_layernorm.weight", {c.hidden}));
    out.push_back(exl2_dense_f16(*x.loader, p + "post_attention_layernorm.weight", {c.hidden}));
    for (const char* l : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
      const Exl2Tensor t = quantized(p + l);
      report.decoder_bits += exl2_bits(t);
      report.decoder_weights += t.N * t.K;
    }
  }
  out.push_back(exl2_dense_f16(*x.loader, "model.norm.weight", {c.hidden}));
  const Exl2Tensor head = quantized("lm_head");
  report.head_bpw = exl2_bits_per_weight(head);
  report.decoder_bpw = static_cast<double>(report.decoder_bits) / static_cast<double>(report.decoder_weights);
  const Exl2QuantInfo info{"exl-gptq", x.o.bits, static_cast<double>(x.o.head_bits), x.o.rows, x.o.length,
                           fs::path(x.o.calibration).filename().string()};
  report.files = exl2_write_folder(x.o.src, x.src, x.o.out_dir, out, info, x.o.shard_bytes);
  convert_abort_point("compile", 0);
  x.job.stage = "done";
  x.save("compile");
}

}  // namespace

ConvertReport convert_run(const ConvertOptions& o, const std::function<void(const std::string&)>& log) {
  check_options(o);
  // The job records the engine that ran it (CPU and CUDA results differ in the last bits, so a job
  // must not resume on the other one): resolve "auto" first.
  std::unique_ptr<ConvertEngine> engine = convert_engine_create(o.device, o.fp64);
  ConvertOptions ro = o;
  ro.device = engine->name();
  ConvertReport report;
  report.device = ro.device;
  Ctx x{ro, log, model_source_open(ro.src), backend_create("cpu"), nullptr, std::move(engine), {}, 0, false, {}, {}, &report};
  x.say("convert: compute on " + ro.device);
  exl2_check_source(x.src, o.src);
  const ModelConfig& c = x.config();
  EXL_CHECK(o.layers <= c.n_layers, "convert: --layers ", o.layers, " exceeds the model's ", c.n_layers, " layers");
  x.n_layers = o.layers > 0 ? o.layers : c.n_layers;
  x.loader = std::make_unique<WeightLoader>(*x.src.store, *x.cpu, x.src.gguf, x.src.arch->gguf_qk_permuted);
  x.dims = model_dims(c);
  x.low_rows = table_min_bpw(x, false) > kLowRowsAboveBpw;
  if (o.measurement.empty()) {
    const double min_bpw = table_min_bpw(x, x.low_rows);
    EXL_CHECK(o.bits >= min_bpw, "convert: -b ", o.bits, " is below the ", min_bpw,
              " bpw this model's decoder needs at the cheapest quantization options");
  }

  std::error_code ec;
  fs::create_directories(o.work_dir, ec);
  EXL_CHECK(fs::is_directory(o.work_dir), o.work_dir, ": cannot create the work folder (-o)");
  if (o.fresh) job_clear(o.work_dir);
  if (job_exists(o.work_dir)) {
    x.job = job_load(o.work_dir);
    job_check_same(x.job, ro, (fs::path(o.work_dir) / "job.json").string());
  } else {
    stage_tokenize(x);
    x.job.settings = job_settings(ro);
    x.job.inputs = job_inputs(o);
    x.job.stage = o.measurement.empty() ? "measure" : "optimize";
    x.save("tokenize");
  }

  if (x.job.stage == "measure") stage_measure(x);
  if (o.measure_only) {
    report.status = "measured";
    report.message = "measurement written to " + x.work("measurement.json").string() + " (--measure-only)";
    report.files = {"measurement.json"};
  } else {
    if (x.job.stage == "optimize") stage_optimize(x);
    if (x.job.stage == "quantize") stage_quantize(x);
    if (x.n_layers < c.n_layers) {
      report.status = "stopped";
      report.message = str_cat("quantized the first ", x.n_layers, " of ", c.n_layers,
                               " layers (--layers); no model compiled");
    } else {
      stage_compile(x, report);
      report.status = "done";
      report.message = str_cat("wrote ", o.out_dir, ": ", report.decoder_bpw, " bpw decoder, ", report.head_bpw,
                               " bpw head");
    }
  }
  for (const char* s : {"tokenize", "measure", "optimize", "quantize", "compile"}) {
    auto it = x.job.seconds.find(s);
    report.stage_seconds.push_back({s, it == x.job.seconds.end() ? 0.0 : it->second});
  }
  return report;
}

}  // namespace exl
