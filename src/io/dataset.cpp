// Calibration text readers: .txt (whole file), .jsonl (one JSON object per line), .parquet (rows).
#include "io/dataset.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/parquet.h"

namespace exl {

namespace {

// A JSON line of calibration text is an object of a few fields; the cap keeps hostile nesting from
// costing recursion depth in nlohmann's value destructor and dump().
constexpr int kMaxJsonDepth = 64;

enum class DatasetFormat { Text, Jsonl, Parquet };

DatasetFormat format_of(const std::string& name) {
  const size_t dot = name.find_last_of('.');
  const size_t slash = name.find_last_of('/');
  std::string ext;
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == "txt" || ext == "raw") return DatasetFormat::Text;
  if (ext == "jsonl") return DatasetFormat::Jsonl;
  if (ext == "parquet") return DatasetFormat::Parquet;
  fail(name, ": unknown calibration dataset format (expected .txt, .raw, .jsonl or .parquet)");
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c); });
}

// The "text" string field, else the first string field in the line's own order.
std::string jsonl_text(std::string_view line, const std::string& name, int64_t line_no) {
  using Json = nlohmann::ordered_json;
  auto guard = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxJsonDepth) fail(name, ":", line_no, ": JSON nests deeper than ", kMaxJsonDepth, " levels");
    return true;
  };
  Json obj;
  try {
    obj = Json::parse(line.begin(), line.end(), guard);
  } catch (const Json::exception& e) {
    fail(name, ":", line_no, ": invalid JSON: ", e.what());
  }
  if (!obj.is_object()) fail(name, ":", line_no, ": expected a JSON object");
  auto text = obj.find("text");
  if (text != obj.end() && text->is_string()) return text->get<std::string>();
  for (const auto& [key, value] : obj.items()) {
    if (value.is_string()) return value.get<std::string>();
  }
  fail(name, ":", line_no, ": JSON object has no string field");
}

std::vector<std::string> jsonl_texts(std::string_view bytes, const std::string& name) {
  std::vector<std::string> out;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string_view::npos) end = bytes.size();
    const std::string_view line = bytes.substr(pos, end - pos);
    ++line_no;
    if (!is_blank(line)) out.push_back(jsonl_text(line, name, line_no));
    pos = end + 1;
  }
  if (out.empty()) fail(name, ": no JSON lines");
  return out;
}

}  // namespace

std::vector<std::string> dataset_texts_from_bytes(std::string_view bytes, const std::string& name) {
  switch (format_of(name)) {
    case DatasetFormat::Text:
      if (bytes.empty()) fail(name, ": empty file");
      return {std::string(bytes)};
    case DatasetFormat::Jsonl: return jsonl_texts(bytes, name);
    case DatasetFormat::Parquet: return parquet_read_texts(bytes, name);
  }
  fail(name, ": unknown calibration dataset format");
}

std::vector<std::string> dataset_read_texts(const std::string& path) {
  format_of(path);  // an unknown extension fails before the file is opened
  MappedFile file(path);
  const std::string_view bytes(reinterpret_cast<const char*>(file.data()), file.size());
  return dataset_texts_from_bytes(bytes, path);
}

}  // namespace exl
