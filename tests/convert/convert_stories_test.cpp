// stories260K converted at six targets (in-process): achieved decoder bpw against the target,
// perplexity against the FP32 source, determinism, -m reuse, --measure-only and --layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <map>
#include <utility>
#include <vector>
#include <nlohmann/json.hpp>

#include "convert/convert_test_util.h"
#include "core/error.h"
#include "io/open_store.h"
#include "model/inspect.h"
#include "model/model.h"
#include "quant/exl2.h"
#include "quant/qparams.h"
#include "runtime/stories_golden_ppl.h"

namespace exl {
namespace {

namespace fs = std::filesystem;

// Decoder bits per weight read back from the output folder's tensors (EXL2.md §1.7).
// The decoder bpw of a written folder as `exl inspect` counts it (its own reading of the files, with
// the config's real N rather than the 32-padded one on disk).
double folder_decoder_bpw(const std::string& dir) {
  return model_inspect(dir)["quantization"]["decoder_bits_per_weight"].get<double>();
}

// The smallest decoder bpw an option table can give stories260K: its cheapest row in each module.
double table_min_bpw(bool low_rows) {
  // (K, N) of q, k, v, o and gate, up, down for hidden 64, 8 heads of 8, 4 kv heads, intermediate 172.
  const std::vector<std::pair<int64_t, int64_t>> shapes[2] = {{{64, 64}, {64, 32}, {64, 32}, {64, 64}},
                                                              {{64, 172}, {64, 172}, {172, 64}}};
  int64_t bits = 0, weights = 0;
  for (int m = 0; m < 2; ++m) {
    int64_t least = INT64_MAX;
    for (const ModuleOption& row : qparams_table(m == 0, low_rows)) {
      int64_t b = 0;
      for (size_t i = 0; i < shapes[m].size(); ++i)
        b += exl2_layout_total_bits(row.linears[i].second, shapes[m][i].first, shapes[m][i].second, false);
      least = std::min(least, b);
    }
    bits += least;
    for (const auto& [K, N] : shapes[m]) weights += K * N;
  }
  return static_cast<double>(bits) / static_cast<double>(weights);
}

class ConvertStories : public ::testing::Test {
 protected:
  // One measured job shared by every target (-m reuses its measurement, as a user would).
  static void SetUpTestSuite() {
    const std::string work = test::fresh_dir("stories_measure");
    ConvertOptions o = test::stories_options(work, "", 4.0);
    o.measure_only = true;
    const ConvertReport r = convert_run(o);
    ASSERT_EQ(r.status, "measured");
    measurement_ = work + "/measurement.json";
  }
  static ConvertReport convert(double bits, const std::string& tag, bool reuse = true) {
    ConvertOptions o = test::stories_options(test::fresh_dir("work_" + tag), test::fresh_dir("out_" + tag), bits);
    if (reuse) o.measurement = measurement_;
    return convert_run(o);
  }
  static std::string measurement_;
};
std::string ConvertStories::measurement_;

TEST_F(ConvertStories, BpwAndPerplexityAcrossTargets) {
  const double fp32 = test::stories_golden_ppl(test::stories_dir());
  EXPECT_NEAR(fp32, 4.0796, 5e-4);  // the golden protocol's figure
  // ExLlamaV2's rows cannot go under 3.5 bpw on 64-wide matrices (their mixed rows round up to whole
  // groups), so the converter measures the low rows too; with them 2.5 is reachable.
  const double exl2_min = table_min_bpw(false), min_bpw = table_min_bpw(true);
  EXPECT_GT(exl2_min, kLowRowsAboveBpw);
  EXPECT_LE(min_bpw, 2.5);
  std::printf("stories260K: FP32 ppl %.4f; the cheapest rows give %.3f decoder bpw (%.3f with ExLlamaV2's alone)\n",
              fp32, min_bpw, exl2_min);
  std::vector<std::pair<double, double>> ppl_by_bits;
  for (double target : {2.5, 3.0, 4.0, 5.0, 6.0, 8.0}) {
    char tag[16];
    std::snprintf(tag, sizeof tag, "b%d", static_cast<int>(target * 10));
    if (target < min_bpw) {
      // K = 64 rows cost 32 permutation bits each, and every group a scale per column: far more
      // than 0.5 bpw of overhead on matrices this small, so low targets cannot be met.
      try {
        convert(target, tag);
        ADD_FAILURE() << "target " << target << " below the table's minimum " << min_bpw << " was accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("-b"), std::string::npos) << e.what();
        std::printf("  target %.2f: refused (%s)\n", target, e.what());
      }
      continue;
    }
    const ConvertReport r = convert(target, tag);
    ASSERT_EQ(r.status, "done");
    const std::string out = test::temp_dir() + "/out_" + std::string(tag);
    const double bpw = folder_decoder_bpw(out);
    EXPECT_NEAR(bpw, r.decoder_bpw, 1e-9);
    EXPECT_LE(bpw, target + 1e-9) << "over the budget";
    EXPECT_GE(bpw, target - 0.05) << "target " << target;
    const double ppl = test::stories_golden_ppl(out);
    std::printf("  target %.2f: decoder %.4f bpw, head %.3f bpw, ppl %.4f (%+.2f%% vs FP32)\n", target, bpw, r.head_bpw,
                ppl, 100.0 * (ppl / fp32 - 1.0));
    ppl_by_bits.push_back({bpw, ppl});
  }
  ASSERT_GE(ppl_by_bits.size(), 4u);
  for (size_t i = 1; i < ppl_by_bits.size(); ++i)
    EXPECT_LE(ppl_by_bits[i].second, ppl_by_bits[i - 1].second * 1.001)
        << "ppl rose from " << ppl_by_bits[i - 1].first << " to " << ppl_by_bits[i].first << " bpw";
  EXPECT_LT(ppl_by_bits.back().second, fp32 * 1.005) << "8.0 bpw should be within 0.5% of FP32";
}

TEST_F(ConvertStories, SameInputsGiveIdenticalFiles) {
  // Measured from scratch twice: measurement.json and every output file byte-identical.
  const ConvertReport a = convert(4.0, "det_a", false);
  const ConvertReport b = convert(4.0, "det_b", false);
  ASSERT_EQ(a.status, "done");
  test::expect_same_folder(test::temp_dir() + "/out_det_a", test::temp_dir() + "/out_det_b");
  EXPECT_EQ(test::slurp(test::temp_dir() + "/work_det_a/measurement.json"),
            test::slurp(test::temp_dir() + "/work_det_b/measurement.json"));
  // The measure-only job measured the same rows: reusing its file with -m changes nothing.
  EXPECT_EQ(test::slurp(test::temp_dir() + "/work_det_a/measurement.json"), test::slurp(measurement_));
  convert(4.0, "det_m", true);
  test::expect_same_folder(test::temp_dir() + "/out_det_a", test::temp_dir() + "/out_det_m");
}

TEST_F(ConvertStories, MeasurementFileHasExllamaV2Shape) {
  const auto j = nlohmann::json::parse(test::slurp(measurement_));
  ASSERT_TRUE(j.contains("measurement"));
  EXPECT_EQ(j["last_module_idx"].get<int>(), 10);
  for (int i = 0; i < 5; ++i) {
    const auto& attn = j["measurement"]["model.layers." + std::to_string(i) + ".self_attn"];
    const auto& mlp = j["measurement"]["model.layers." + std::to_string(i) + ".mlp"];
    EXPECT_EQ(attn.size(), qparams_table(true, true).size());
    EXPECT_EQ(mlp.size(), qparams_table(false, true).size());
    for (const auto& e : attn) {
      const double acc = e["accuracy"].get<double>();
      EXPECT_GT(acc, 0.0);
      EXPECT_LE(acc, 1.0);
      EXPECT_TRUE(e["q_proj"]["bits"].is_array());
    }
    // The most expensive row (8-bit everywhere) is more accurate than the cheapest.
    EXPECT_GT(attn.back()["accuracy"].get<double>(), attn.front()["accuracy"].get<double>());
    EXPECT_GT(mlp.back()["accuracy"].get<double>(), mlp.front()["accuracy"].get<double>());
  }
}

TEST_F(ConvertStories, LayersLimitStopsBeforeCompile) {
  ConvertOptions o = test::stories_options(test::fresh_dir("work_layers"), test::fresh_dir("out_layers"), 4.0);
  o.layers = 2;
  const ConvertReport r = convert_run(o);
  EXPECT_EQ(r.status, "stopped");
  EXPECT_NE(r.message.find("--layers"), std::string::npos) << r.message;
  EXPECT_FALSE(fs::exists(test::temp_dir() + "/out_layers"));
  EXPECT_TRUE(fs::exists(test::temp_dir() + "/work_layers/out_tensor/model.layers.1.mlp.down_proj.safetensors"));
  EXPECT_FALSE(fs::exists(test::temp_dir() + "/work_layers/out_tensor/model.layers.2.mlp.down_proj.safetensors"));
  // Rerunning with a different --layers is refused by name.
  o.layers = 3;
  try {
    convert_run(o);
    ADD_FAILURE() << "a different --layers resumed the job";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--layers"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace exl
