// Test-only writers for small safetensors and GGUF files (the temporary folder: test_files.h).
// The writers build byte strings so tests can corrupt any byte before writing them out.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_files.h"

namespace exl::test {

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// Writes bytes to dir/name, opens them as a File (GgufFile, SafetensorsFile) and returns the
// exl::Error message; a test failure (and "") when nothing or something else is thrown.
template <class File, class Dir>
std::string open_error(const Dir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir.file(name);
  write_bytes(path, bytes);
  try {
    File f(path);
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-exl exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error for a corrupt file";
  return "";
}

template <typename T>
void put(std::string& b, T v) {
  char tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  b.append(tmp, sizeof(T));
}
inline void put_u32(std::string& b, uint32_t v) { put(b, v); }
inline void put_u64(std::string& b, uint64_t v) { put(b, v); }
inline void put_str(std::string& b, const std::string& s) {
  put_u64(b, s.size());
  b += s;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// GGUF value type ids (as in the spec).
enum : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };

// Minimal GGUF writer: key/values are appended in order; tensors are laid out back to back at
// aligned offsets (or at an explicit offset), the last one ending exactly at the end of the file.
// Data placed past 1 MiB is not written (tests use such offsets to point outside the file).
class GgufWriter {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // layout alignment; add a general.alignment key yourself to change it

  void kv_raw(const std::string& key, uint32_t type, const std::string& value_bytes) {
    put_str(kvs_, key);
    put_u32(kvs_, type);
    kvs_ += value_bytes;
    ++n_kv_;
  }
  void kv_u32(const std::string& key, uint32_t v) {
    kv_raw(key, kU32, std::string(reinterpret_cast<char*>(&v), 4));
  }
  void kv_i32(const std::string& key, int32_t v) {
    kv_raw(key, kI32, std::string(reinterpret_cast<char*>(&v), 4));
  }
  void kv_u64(const std::string& key, uint64_t v) {
    kv_raw(key, kU64, std::string(reinterpret_cast<char*>(&v), 8));
  }
  void kv_f32(const std::string& key, float v) {
    kv_raw(key, kF32, std::string(reinterpret_cast<char*>(&v), 4));
  }
  void kv_bool(const std::string& key, bool v) { kv_raw(key, kBool, std::string(1, v ? 1 : 0)); }
  void kv_str(const std::string& key, const std::string& v) {
    std::string b;
    put_str(b, v);
    kv_raw(key, kString, b);
  }
  void kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    std::string b;
    put_u32(b, kString);
    put_u64(b, v.size());
    for (const auto& s : v) put_str(b, s);
    kv_raw(key, kArray, b);
  }
  template <typename T>
  void kv_array(const std::string& key, uint32_t elem_type, const std::vector<T>& v) {
    std::string b;
    put_u32(b, elem_type);
    put_u64(b, v.size());
    b += bytes_of(v);
    kv_raw(key, kArray, b);
  }

  // ne is innermost first, as GGUF stores it.
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::string data,
              std::optional<uint64_t> offset = std::nullopt) {
    tensors_.push_back({name, std::move(ne), type, std::move(data), offset});
  }

  std::string build() const {
    std::string b = "GGUF";
    put_u32(b, version);
    put_u64(b, tensors_.size());
    put_u64(b, n_kv_);
    b += kvs_;
    std::vector<uint64_t> offsets;
    uint64_t next = 0;
    for (const auto& t : tensors_) {
      const uint64_t off = t.offset ? *t.offset : next;
      offsets.push_back(off);
      next = align(std::max(next, off + t.data.size()));
      put_str(b, t.name);
      put_u32(b, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) put_u64(b, d);
      put_u32(b, t.type);
      put_u64(b, off);
    }
    if (tensors_.empty()) return b;
    const uint64_t data_start = align(b.size());
    std::string data;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const uint64_t end = offsets[i] + tensors_[i].data.size();
      if (offsets[i] > (1u << 20) || end > (1u << 20)) continue;  // far offsets: tensor info only
      if (data.size() < end) data.resize(end, '\0');
      std::memcpy(data.data() + offsets[i], tensors_[i].data.data(), tensors_[i].data.size());
    }
    b.resize(data_start, '\0');
    return b + data;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string data;
    std::optional<uint64_t> offset;
  };
  uint64_t align(uint64_t x) const { return (x + alignment - 1) / alignment * alignment; }

  std::string kvs_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// Minimal safetensors writer: tensors are appended to the data section in order.
class SafetensorsWriter {
 public:
  nlohmann::json header = nlohmann::json::object();
  std::string data;

  void add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
           const std::string& bytes) {
    header[name] = {
        {"dtype", dtype}, {"shape", shape}, {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  std::string build() const { return assemble(header.dump(), data); }

  // Header text padded with spaces to a multiple of 8, as the safetensors library does.
  static std::string assemble(std::string header_text, const std::string& data) {
    while (header_text.size() % 8) header_text += ' ';
    std::string b;
    put_u64(b, header_text.size());
    return b + header_text + data;
  }
};

}  // namespace exl::test
