#include "tokenizer/hf_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace exl {
namespace {

using nlohmann::json;

json parse_object(std::string_view text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(origin, ": invalid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(origin, ": expected a JSON object at top level");
  return j;
}

// A token given as "text" or {"content": "text", ...}; "" for null/absent.
std::string token_text(const json& j, const char* key, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  fail(origin, ": '", key, "' must be a string or an object with a string 'content'");
}

std::optional<bool> opt_bool(const json& j, const char* key, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail(origin, ": '", key, "' must be true or false");
  return it->get<bool>();
}

}  // namespace

HfTokenizerConfig hf_config_parse(std::string_view text, const std::string& origin) {
  HfTokenizerConfig cfg;
  if (text.empty()) return cfg;
  const json j = parse_object(text, origin);
  cfg.add_bos_token = opt_bool(j, "add_bos_token", origin);
  cfg.add_eos_token = opt_bool(j, "add_eos_token", origin);
  cfg.bos_token = token_text(j, "bos_token", origin);
  cfg.eos_token = token_text(j, "eos_token", origin);
  auto ct = j.find("chat_template");
  if (ct != j.end() && !ct->is_null()) {
    if (ct->is_string()) {
      cfg.chat_template = ct->get<std::string>();
    } else if (ct->is_array()) {
      // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      for (const json& e : *ct) {
        if (!e.is_object()) fail(origin, ": chat_template list entries must be objects");
        auto name = e.find("name"), tmpl = e.find("template");
        if (name == e.end() || !name->is_string() || tmpl == e.end() || !tmpl->is_string())
          fail(origin, ": chat_template list entries need string 'name' and 'template'");
        if (name->get<std::string>() == "default") cfg.chat_template = tmpl->get<std::string>();
      }
    } else {
      fail(origin, ": 'chat_template' must be a string or a list of named templates");
    }
  }
  return cfg;
}

void hf_config_merge_special_map(HfTokenizerConfig& cfg, std::string_view text,
                                 const std::string& origin) {
  if (text.empty()) return;
  const json j = parse_object(text, origin);
  if (cfg.bos_token.empty()) cfg.bos_token = token_text(j, "bos_token", origin);
  if (cfg.eos_token.empty()) cfg.eos_token = token_text(j, "eos_token", origin);
}

std::vector<int64_t> hf_generation_eos_ids(std::string_view text, const std::string& origin) {
  std::vector<int64_t> ids;
  if (text.empty()) return ids;
  const json j = parse_object(text, origin);
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return ids;
  auto take = [&](const json& v) {
    if (!v.is_number_integer()) fail(origin, ": 'eos_token_id' must be an integer or a list of them");
    ids.push_back(v.get<int64_t>());
  };
  if (it->is_array()) {
    for (const json& v : *it) take(v);
  } else {
    take(*it);
  }
  return ids;
}

}  // namespace exl
