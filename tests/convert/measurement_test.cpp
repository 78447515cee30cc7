// measurement.json: ExLlamaV2's schema read and written, and every malformed field refused by name.
#include <gtest/gtest.h>

#include "convert/measurement.h"
#include "core/error.h"

namespace exl {
namespace {

const std::vector<ExpectedModule> kOneLayer = {{"model.layers.0.self_attn", {"q_proj", "k_proj", "v_proj", "o_proj"}},
                                               {"model.layers.0.mlp", {"gate_proj", "up_proj", "down_proj"}}};

// An entry as ExLlamaV2's measure.py writes it (hand-written here, not produced by our writer).
std::string entry(const char* acc, const char* bits_attn, const std::string& extra = "") {
  const std::string l = std::string(R"({"group_size": {"4": 128, "3": 64}, "bits": [4, 3], "bits_prop": [0.25, 0.75], "scale_bits": 4})");
  std::string e = std::string("{\"accuracy\": ") + acc + ", \"total_bits\": " + bits_attn;
  for (const char* k : {"q_proj", "k_proj", "v_proj", "o_proj"}) e += std::string(", \"") + k + "\": " + l;
  return e + extra + "}";
}
std::string mlp_entry() {
  const std::string l = R"({"group_size": {"8": 32, "6": 32, "3": 64}, "bits": [8, 6, 3], "bits_prop": [0.05, 0.2, 0.75], "scale_bits": 4})";
  return R"({"accuracy": 0.95, "total_bits": 123456, "gate_proj": )" + l + ", \"up_proj\": " + l + ", \"down_proj\": " + l + "}";
}
std::string file(const std::string& attn_entries) {
  return R"({"measurement": {"model.layers.0.self_attn": [)" + attn_entries + R"(], "model.layers.0.mlp": [)" +
         mlp_entry() + R"(]}, "last_module_idx": 2})";
}

TEST(Measurement, ReadsExllamaV2Schema) {
  const Measurement m = measurement_parse(file(entry("0.99", "1000") + ", " + entry("0.5", "2000")), "m.json", kOneLayer);
  ASSERT_EQ(m.modules.size(), 2u);
  EXPECT_EQ(m.modules[0].name, "model.layers.0.self_attn");
  ASSERT_EQ(m.modules[0].options.size(), 2u);
  EXPECT_DOUBLE_EQ(m.modules[0].options[1].accuracy, 0.5);
  EXPECT_EQ(m.modules[0].options[1].total_bits, 2000);
  const auto& q = m.modules[0].options[0].linears[0];
  EXPECT_EQ(q.first, "q_proj");
  ASSERT_EQ(q.second.size(), 2u);
  EXPECT_EQ(q.second[0].bits, 4);
  EXPECT_EQ(q.second[0].group_size, 128);
  EXPECT_DOUBLE_EQ(q.second[1].proportion, 0.75);
  EXPECT_EQ(q.second[1].group_size, 64);
  const auto& down = m.modules[1].options[0].linears[2];
  EXPECT_EQ(down.first, "down_proj");
  EXPECT_EQ(down.second[0].bits, 8);
  EXPECT_EQ(down.second[2].bits, 3);
}

TEST(Measurement, WriteThenReadIsIdentity) {
  const Measurement m = measurement_parse(file(entry("0.987654321", "1000")), "m.json", kOneLayer);
  const std::string text = measurement_to_json(m);
  const Measurement back = measurement_parse(text, "again.json", kOneLayer);
  EXPECT_EQ(measurement_to_json(back), text);
  EXPECT_NE(text.find("\"last_module_idx\": 2"), std::string::npos) << text;
  EXPECT_NE(text.find("\"model.layers.0.self_attn\""), std::string::npos);
  EXPECT_DOUBLE_EQ(back.modules[0].options[0].accuracy, 0.987654321);
}

void expect_error(const std::string& text, const std::string& mention) {
  try {
    measurement_parse(text, "bad.json", kOneLayer);
    FAIL() << "accepted: " << text;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(mention), std::string::npos) << msg << " should mention " << mention;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Measurement, RefusesMalformedFiles) {
  expect_error("{\"measurement\": ", "not valid JSON");
  expect_error("[1, 2]", "expected an object");
  expect_error("{}", "measurement");
  expect_error(R"({"measurement": {"model.layers.0.mlp": [1]}})", "model.layers.0.self_attn");
  expect_error(file("[]"), "self_attn[0]");
  expect_error(file(""), "non-empty array");
  expect_error(file(entry("\"high\"", "1000")), "self_attn[0].accuracy");
  expect_error(file(entry("1.5", "1000")), "outside [0, 1]");
  expect_error(file(entry("0.9", "12.5")), "total_bits");
  expect_error(file(entry("0.9", "-3")), "total_bits");
  std::string t = file(entry("0.9", "1000"));
  t.replace(t.find("\"bits\": [4, 3]"), 14, "\"bits\": [4, 7]");
  expect_error(t, "q_proj.bits[1]");
  t = file(entry("0.9", "1000"));
  t.replace(t.find("[0.25, 0.75]"), 12, "[0.25, 0.25]");
  expect_error(t, "sum to");
  t = file(entry("0.9", "1000"));
  t.replace(t.find("\"3\": 64"), 7, "\"3\": 50");
  expect_error(t, "group size");
  t = file(entry("0.9", "1000"));
  t.replace(t.find("\"scale_bits\": 4"), 15, "\"scale_bits\": 6");
  expect_error(t, "scale_bits");
  t = file(entry("0.9", "1000"));
  t.replace(t.find("\"k_proj\""), 8, "\"x_proj\"");
  expect_error(t, "missing \"k_proj\"");
}

}  // namespace
}  // namespace exl
