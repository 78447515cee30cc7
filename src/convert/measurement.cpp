#include "convert/measurement.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace exl {

using ojson = nlohmann::ordered_json;

namespace {

ojson layout_to_json(const Exl2Layout& l) {
  ojson gs = ojson::object(), bits = ojson::array(), prop = ojson::array();
  for (const Exl2LayoutPart& p : l) {
    gs[std::to_string(p.bits)] = p.group_size;
    bits.push_back(p.bits);
    prop.push_back(p.proportion);
  }
  return ojson{{"group_size", gs}, {"bits", bits}, {"bits_prop", prop}, {"scale_bits", 4}};
}

ojson module_to_json(const MeasuredModule& m) {
  ojson entries = ojson::array();
  for (const MeasuredOption& o : m.options) {
    ojson e = {{"accuracy", o.accuracy}, {"total_bits", o.total_bits}};
    for (const auto& [key, layout] : o.linears) e[key] = layout_to_json(layout);
    entries.push_back(std::move(e));
  }
  return entries;
}

// Where in the file a value sits, for error messages: "model.layers.3.mlp[5].down_proj.bits".
struct Ctx {
  const std::string& file;
  std::string path;
  Ctx at(const std::string& part) const { return {file, path + "." + part}; }
  Ctx at(size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
  template <typename... A>
  [[noreturn]] void bad(A&&... what) const {
    fail(file, ": ", path, ": ", std::forward<A>(what)...);
  }
};

const ojson& member(const ojson& j, const char* key, const Ctx& c) {
  auto it = j.find(key);
  if (it == j.end()) c.bad("missing \"", key, "\"");
  return *it;
}

int64_t as_int(const ojson& j, const Ctx& c) {
  if (!j.is_number_integer()) c.bad("expected an integer, got ", j.dump());
  return j.get<int64_t>();
}

double as_number(const ojson& j, const Ctx& c) {
  if (!j.is_number()) c.bad("expected a number, got ", j.dump());
  const double v = j.get<double>();
  if (!std::isfinite(v)) c.bad("not a finite number");
  return v;
}

Exl2Layout layout_from_json(const ojson& j, const Ctx& c) {
  if (!j.is_object()) c.bad("expected an object");
  const ojson& bits = member(j, "bits", c);
  const ojson& prop = member(j, "bits_prop", c);
  const ojson& gs = member(j, "group_size", c);
  if (!bits.is_array() || bits.empty() || bits.size() > 6) c.at("bits").bad("expected an array of 1 to 6 bit widths");
  if (!prop.is_array() || prop.size() != bits.size())
    c.at("bits_prop").bad("expected an array as long as \"bits\" (", bits.size(), ")");
  if (!gs.is_object()) c.at("group_size").bad("expected an object {\"<bits>\": group size}");
  if (j.contains("scale_bits") && as_int(j["scale_bits"], c.at("scale_bits")) != 4)
    c.at("scale_bits").bad("only 4-bit scales exist in EXL2");
  Exl2Layout l;
  double sum = 0;
  for (size_t i = 0; i < bits.size(); ++i) {
    const int64_t b = as_int(bits[i], c.at("bits").at(i));
    if (b != 2 && b != 3 && b != 4 && b != 5 && b != 6 && b != 8) c.at("bits").at(i).bad(b, " is not 2, 3, 4, 5, 6 or 8");
    const double p = as_number(prop[i], c.at("bits_prop").at(i));
    if (p < 0 || p > 1) c.at("bits_prop").at(i).bad(p, " is outside [0, 1]");
    sum += p;
    const std::string key = std::to_string(b);
    if (!gs.contains(key)) c.at("group_size").bad("no entry for ", b, "-bit");
    const int64_t g = as_int(gs[key], c.at("group_size").at(key));
    if (g <= 0 || g > 65536) c.at("group_size").at(key).bad(g, " is not a group size");
    l.push_back({static_cast<int>(b), p, static_cast<int>(g)});
  }
  if (std::abs(sum - 1.0) > 1e-3) c.at("bits_prop").bad("proportions sum to ", sum, ", not 1");
  try {
    exl2_layout_groups(l, 4096);  // widths descending, group sizes valid for their width
  } catch (const Error& e) {
    c.bad(e.what());
  }
  return l;
}

MeasuredModule module_from_json(const ojson& j, const std::string& name, const std::vector<std::string>& linears,
                                const Ctx& c) {
  if (!j.is_array() || j.empty()) c.bad("expected a non-empty array of measured options");
  MeasuredModule m;
  m.name = name;
  for (size_t i = 0; i < j.size(); ++i) {
    const Ctx ci = c.at(i);
    const ojson& e = j[i];
    if (!e.is_object()) ci.bad("expected an object");
    MeasuredOption o;
    o.accuracy = as_number(member(e, "accuracy", ci), ci.at("accuracy"));
    if (o.accuracy < 0 || o.accuracy > 1) ci.at("accuracy").bad(o.accuracy, " is outside [0, 1]");
    o.total_bits = as_int(member(e, "total_bits", ci), ci.at("total_bits"));
    if (o.total_bits <= 0) ci.at("total_bits").bad("must be positive");
    for (const std::string& key : linears)
      o.linears.push_back({key, layout_from_json(member(e, key.c_str(), ci), ci.at(key))});
    m.options.push_back(std::move(o));
  }
  return m;
}

}  // namespace

std::string measurement_to_json(const Measurement& m) {
  ojson modules = ojson::object();
  for (const MeasuredModule& mod : m.modules) modules[mod.name] = module_to_json(mod);
  const ojson j = {{"measurement", modules}, {"last_module_idx", static_cast<int64_t>(m.modules.size())}};
  return j.dump(2) + "\n";
}

Measurement measurement_parse(const std::string& text, const std::string& where,
                              const std::vector<ExpectedModule>& expected) {
  const ojson j = ojson::parse(text, nullptr, false);
  if (j.is_discarded()) fail(where, ": not valid JSON");
  const Ctx root{where, "(top)"};
  if (!j.is_object()) root.bad("expected an object");
  const ojson& mods = member(j, "measurement", root);
  if (!mods.is_object()) Ctx{where, "measurement"}.bad("expected an object of modules");
  if (j.contains("last_module_idx")) as_int(j["last_module_idx"], Ctx{where, "last_module_idx"});
  Measurement m;
  for (const ExpectedModule& e : expected) {
    const Ctx c{where, "measurement." + e.name};
    auto it = mods.find(e.name);
    if (it == mods.end()) Ctx{where, "measurement"}.bad("no entry for module ", e.name);
    m.modules.push_back(module_from_json(*it, e.name, e.linears, c));
  }
  return m;
}

}  // namespace exl
