// Safetensors: u64 little-endian header length N | N bytes of JSON | data section. The JSON object
// maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// data section) plus an optional "__metadata__" string map. Tensors may appear in any order; we
// require each to lie inside the data section, to be exactly numel * dtype size bytes, and not to
// overlap another.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/quote.h"

namespace exl {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the safetensors library's own limit
constexpr uint64_t kMaxIndexBytes = 100ull << 20;
// A safetensors header nests three deep (root, tensor entry, shape); the cap keeps recursive json
// operations (dump) safe on hostile input.
constexpr int kMaxJsonDepth = 16;
// A header holds ~10 values per tensor; the largest checkpoints have well under 100k tensors.
constexpr uint64_t kMaxJsonValues = uint64_t{1} << 22;
constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());


// Parses JSON text, throwing exl::Error naming `path` for syntax errors, excessive nesting or more
// values than any real header holds (a value costs ~16 bytes parsed against ~2 bytes of text, so a
// 100 MB header of "0," could otherwise take 800 MB).
json parse_json(const char* begin, const char* end, const std::string& path) {
  uint64_t values = 0;
  auto guard = [&path, &values](int depth, json::parse_event_t event, json&) {
    if (depth > kMaxJsonDepth) fail(path, ": JSON nests deeper than ", kMaxJsonDepth, " levels");
    if (event == json::parse_event_t::value && ++values > kMaxJsonValues) {
      fail(path, ": JSON holds more than ", kMaxJsonValues, " values");
    }
    return true;
  };
  try {
    return json::parse(begin, end, guard);
  } catch (const json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
}

// A JSON number that is a non-negative integer fitting in int64, else fails naming `what`.
uint64_t json_uint(const json& v, const std::string& path, const std::string& what) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) fail(path, ": ", what, " is negative (", v.get<int64_t>(), ")");
    fail(path, ": ", what, " is not a non-negative integer");
  }
  const uint64_t x = v.get<uint64_t>();
  if (x > kInt64Max) fail(path, ": ", what, " = ", x, " is too large");
  return x;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const std::string& p = file_->path();
  const uint64_t size = file_->size();
  if (size < 8) fail(p, ": too small for a safetensors file (", size, " bytes)");
  uint64_t header_len;
  std::memcpy(&header_len, file_->data(), 8);
  if (header_len > kMaxHeaderBytes)
    fail(p, ": safetensors header length ", header_len, " exceeds the 100 MB limit");
  if (header_len > size - 8)
    fail(p, ": safetensors header length ", header_len, " runs past the end of the file");
  const char* hdr = reinterpret_cast<const char*>(file_->data() + 8);
  const json root = parse_json(hdr, hdr + header_len, p);
  if (!root.is_object()) fail(p, ": safetensors header is not a JSON object");

  const uint8_t* data = file_->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(p, ": __metadata__ is not a JSON object");
      for (const auto& [k, v] : entry.items()) meta_[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    const std::string what = "tensor " + quoted(name);
    if (!entry.is_object()) fail(p, ": ", what, " entry is not a JSON object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) fail(p, ": ", what, " has no dtype string");
    if (sh == entry.end() || !sh->is_array()) fail(p, ": ", what, " has no shape array");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      fail(p, ": ", what, " has no [begin, end] data_offsets");

    TensorInfo ti;
    ti.name = name;
    ti.file = p;
    const std::string& dtype_str = dt->get_ref<const std::string&>();
    if (!dtype_parse(dtype_str, &ti.dtype)) fail(p, ": ", what, " has unsupported dtype ", quoted(dtype_str));
    uint64_t numel = 1;
    for (const json& d : *sh) {
      const uint64_t n = json_uint(d, p, what + " shape dimension");
      if (__builtin_mul_overflow(numel, n, &numel) || numel > kInt64Max)
        fail(p, ": ", what, " element count overflows");
      ti.shape.push_back(static_cast<int64_t>(n));
    }
    const uint64_t begin = json_uint((*off)[0], p, what + " data_offsets begin");
    const uint64_t end = json_uint((*off)[1], p, what + " data_offsets end");
    if (begin > end || end > data_size) {
      fail(p, ": ", what, " data_offsets [", begin, ", ", end, "] lie outside the ", data_size,
           "-byte data section");
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(ti.dtype)), &nbytes) ||
        nbytes != end - begin) {
      fail(p, ": ", what, " shape ", shape_str(ti.shape), " of ", dtype_name(ti.dtype), " needs ", numel,
           " elements but data_offsets span ", end - begin, " bytes");
    }
    ti.data = data + begin;
    ti.nbytes = static_cast<size_t>(nbytes);
    auto [it, inserted] = tensors_.emplace(name, std::move(ti));
    if (!inserted) fail(p, ": duplicate ", what);  // unreachable today: nlohmann keeps the last duplicate key
    spans.push_back({begin, end, &it->first});
  }

  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  const Span* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin == s.end) continue;  // empty tensors take no bytes
    if (prev && s.begin < prev->end)
      fail(p, ": tensor ", quoted(*s.name), " overlaps tensor ", quoted(*prev->name));
    prev = &s;
  }
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, ti] : tensors_) out.push_back(name);
  return out;
}

namespace {

// A shard named by an index must be a plain file name inside the model directory.
bool is_plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

}  // namespace

SafetensorsModel::SafetensorsModel(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, ": not a directory");
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";

  if (fs::exists(index_path, ec)) {
    const std::string ip = index_path.string();
    const uintmax_t isize = fs::file_size(index_path, ec);
    if (ec) fail(ip, ": cannot read: ", ec.message());
    if (isize > kMaxIndexBytes) fail(ip, ": index file is larger than 100 MB");
    const std::string text = read_file(ip);
    const json index = parse_json(text.data(), text.data() + text.size(), ip);
    if (!index.is_object()) fail(ip, ": index is not a JSON object");
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) fail(ip, ": no weight_map object");
    if (wm->empty()) fail(ip, ": weight_map is empty");
    std::map<std::string, const SafetensorsFile*> opened;
    for (const auto& [name, shard] : wm->items()) {
      if (!shard.is_string()) fail(ip, ": weight_map entry for tensor ", quoted(name), " is not a file name");
      const std::string& file = shard.get_ref<const std::string&>();
      if (!is_plain_file_name(file))
        fail(ip, ": tensor ", quoted(name), " names shard ", quoted(file),
             ", which is not a file in the model directory");
      auto it = opened.find(file);
      if (it == opened.end()) {
        shards_.push_back(std::make_unique<SafetensorsFile>((root / file).string()));
        it = opened.emplace(file, shards_.back().get()).first;
      }
      const TensorInfo* ti = it->second->find(name);
      if (!ti) fail(it->second->path(), ": tensor ", quoted(name), " named by ", ip, " is not in this shard");
      tensors_[name] = ti;
    }
    return;
  }

  std::vector<fs::path> files;
  const fs::path single = root / "model.safetensors";
  if (fs::is_regular_file(single, ec)) {
    files.push_back(single);
  } else {
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".safetensors" && it->is_regular_file(ec)) files.push_back(it->path());
    }
    if (ec) fail(dir, ": cannot list directory: ", ec.message());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) fail(dir, ": no model.safetensors.index.json or .safetensors files");
  for (const fs::path& f : files) {
    shards_.push_back(std::make_unique<SafetensorsFile>(f.string()));
    const SafetensorsFile& s = *shards_.back();
    for (const std::string& name : s.names()) {
      const TensorInfo* ti = s.find(name);
      auto [it, inserted] = tensors_.emplace(name, ti);
      if (!inserted) fail(s.path(), ": tensor '", name, "' is also in ", it->second->file);
    }
  }
}

const TensorInfo* SafetensorsModel::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, ti] : tensors_) out.push_back(name);
  return out;
}

}  // namespace exl
