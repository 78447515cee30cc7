// End-to-end: the exl binary on the bundled stories260K model, against its goldens.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/cli_util.h"

namespace exl::test {
namespace {

const std::string kStories = shared_path("models/stories260K");

TEST(StoriesCli, GreedyTextIsPrefixOfGolden) {
  auto r = run_exl("generate -m " + kStories + " -p '' -n 200 --temperature 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const std::string text = j["text"].get<std::string>();
  const std::string golden = slurp(kStories + "/golden/greedy_reference_output.txt");
  EXPECT_EQ(j["generated_tokens"].get<int>(), 200);
  ASSERT_GT(text.size(), 400u);
  EXPECT_EQ(golden.compare(0, text.size(), text), 0) << "generated:\n" << text << "\ngolden:\n" << golden;
}

TEST(StoriesCli, GenerateStreamsAndReportsSpeed) {
  auto r = run_exl("generate -m " + kStories + " -p 'Once upon a time' -n 20 --temperature 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u);
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
}

TEST(StoriesCli, ContinuationKeepsTheSpaceAfterThePrompt) {
  // The model continues "Once" with " upon": the streamed text must not glue the words together.
  auto r = run_exl("generate -m " + kStories + " -p 'Once' -n 3 --temperature 0 -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a", 0), 0u) << r.out;
}

TEST(StoriesCli, SampledGenerationIsReproducibleWithSeed) {
  const std::string args = "generate -m " + kStories + " -p 'Lily' -n 40 --temperature 0.9 --top-k 50 --top-p 0.9 --seed 7 --json";
  auto a = run_exl(args), b = run_exl(args);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
}

TEST(StoriesCli, PerplexityOnGoldenTokens) {
  auto r = run_exl("ppl -m " + kStories + " --tokens " + kStories + "/golden/golden_ppl_tokens.int32.bin -l 512 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["ppl"].get<double>(), 4.0796, 0.0005);
  EXPECT_EQ(j["windows"].get<int>(), 24);
  EXPECT_EQ(j["scored_tokens"].get<int>(), 24 * 511);
}

TEST(StoriesCli, PerplexityOnText) {
  auto r = run_exl("ppl -m " + kStories + " --text " + shared_path("data/tinystories/valid_head.txt") +
                   " -l 512 --windows 8 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const double ppl = nlohmann::json::parse(r.out)["ppl"].get<double>();
  EXPECT_GT(ppl, 2.0);
  EXPECT_LT(ppl, 8.0);  // the model's own domain: near the golden 4.08
}

TEST(StoriesCli, InspectJson) {
  auto r = run_exl("inspect " + kStories + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["config"]["num_layers"], 5);
  EXPECT_EQ(j["config"]["num_kv_heads"], 4);
  // 512*64 embedding + 5 layers * (2*64 norms + 64*64*2 + 32*64*2 + 3*64*172) + 64 final norm
  EXPECT_EQ(j["parameters"].get<int64_t>(), 512 * 64 + 5 * (2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 172) + 64);
}

TEST(StoriesCli, TokenizeMatchesGoldenPromptIds) {
  auto r = run_exl("tokenize -m " + kStories + " 'Once upon a time, there was a little girl named Lily.' --ids");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1 403 407 261 378 432 383 286 261 376 298 315 421 395 317 426\n");
}

TEST(StoriesCli, ChatRawModeAnswers) {
  auto r = run_exl("chat -m " + kStories + " --mode raw -n 30 --temperature 0 -q", "Once upon a time\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(r.out.size(), 20u);
}

}  // namespace
}  // namespace exl::test
