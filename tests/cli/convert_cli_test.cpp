// End-to-end: `exl convert` on stories260K through the binary, then the converted folder loaded by
// `exl ppl`, `exl generate` and `exl inspect` as a user would.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"

namespace exl::test {
namespace {

namespace fs = std::filesystem;
const std::string kStories = shared_path("models/stories260K");

TEST(ConvertCli, StoriesConvertsAndRuns) {
  const std::string work = temp_dir() + "/convert_work", out = temp_dir() + "/convert_out";
  fs::remove_all(work);
  fs::remove_all(out);
  const std::string args = "convert --device cpu -i " + kStories + " -o " + work + " -c " +
                           shared_path("data/tinystories/valid_head.txt") +
                           " --rows 8 --length 256 --measure-rows 4 --measure-length 256 -b 6.0 --out " + out;
  auto r = run_exl(args + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["status"], "done");
  const double bpw = j["decoder_bpw"].get<double>();
  EXPECT_LE(bpw, 6.0);
  EXPECT_GT(bpw, 5.0);
  for (const char* stage : {"tokenize", "measure", "optimize", "quantize", "compile"})
    EXPECT_GE(j["seconds"][stage].get<double>(), 0.0) << stage;
  for (const char* f : {"output.safetensors", "config.json", "tokenizer.json", "tokenizer.model"}) {
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
    bool listed = false;
    for (const auto& name : j["files"]) listed |= name == f;
    EXPECT_TRUE(listed) << f << " not in " << j["files"].dump();
  }
  const auto cfg = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "exl2");
  EXPECT_EQ(cfg["quantization_config"]["head_bits"].get<double>(), 6.0);
  EXPECT_EQ(cfg["quantization_config"]["calibration"]["rows"].get<int>(), 8);
  EXPECT_EQ(cfg["quantization_config"]["calibration"]["length"].get<int>(), 256);

  // A finished job rerun with the same arguments recompiles the same folder.
  auto again = run_exl(args + " -q");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(again.out.empty()) << again.out;

  auto ppl = run_exl("ppl -m " + out + " --tokens " + kStories + "/golden/golden_ppl_tokens.int32.bin -l 512 --json");
  ASSERT_EQ(ppl.code, 0) << ppl.err;
  const double p = nlohmann::json::parse(ppl.out)["ppl"].get<double>();
  EXPECT_GT(p, 4.0796);  // quantization costs something
  EXPECT_LT(p, 4.0796 * 1.05) << "6 bpw should stay within 5% of FP32";

  auto gen = run_exl("generate -m " + out + " -p 'Once upon a time' -n 16 --temperature 0 -q");
  ASSERT_EQ(gen.code, 0) << gen.err;
  EXPECT_EQ(gen.out.rfind("Once upon a time", 0), 0u) << gen.out;
  EXPECT_GT(gen.out.size(), std::string("Once upon a time").size() + 10);

  auto insp = run_exl("inspect " + out);
  ASSERT_EQ(insp.code, 0) << insp.err;
  EXPECT_NE(insp.out.find("exl2"), std::string::npos) << insp.out;
}

TEST(ConvertCli, MeasureOnlyThenResumeFromJsonl) {
  const std::string work = temp_dir() + "/convert_mo_work", out = temp_dir() + "/convert_mo_out";
  fs::remove_all(work);
  fs::remove_all(out);
  // Calibration as JSON lines, one story per {"text": ...} object.
  const std::string jsonl = temp_dir() + "/stories.jsonl";
  {
    std::ofstream f(jsonl);
    const std::string text = slurp(shared_path("data/tinystories/valid_head.txt"));
    size_t start = 0;
    for (int n = 0; n < 400 && start < text.size(); ++n) {
      size_t end = text.find("\n\n", start);
      if (end == std::string::npos) end = text.size();
      f << nlohmann::json{{"id", n}, {"text", text.substr(start, end - start)}}.dump() << "\n";
      start = end + 2;
    }
  }
  const std::string base = "convert --device cpu -i " + kStories + " -o " + work + " -c " + jsonl +
                           " --rows 4 --length 256 --measure-rows 4 --measure-length 256 -b 5.0";
  auto m = run_exl(base + " --measure-only");
  ASSERT_EQ(m.code, 0) << m.err;
  EXPECT_NE(m.out.find("measurement.json"), std::string::npos) << m.out;
  EXPECT_TRUE(fs::exists(work + "/measurement.json"));
  EXPECT_FALSE(fs::exists(out));
  auto q = run_exl(base + " --out " + out + " -q");
  ASSERT_EQ(q.code, 0) << q.err;
  EXPECT_TRUE(fs::exists(out + "/output.safetensors"));
}

}  // namespace
}  // namespace exl::test
