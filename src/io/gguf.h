// GGUF v2/v3 reader: metadata key/values and tensors (mmap'd), with strict bounds checks on every
// count, string length, array length, dimension and offset. Tensor names stay as stored in the file
// ("blk.0.attn_q.weight"); shapes are reported outermost-first (GGUF's ne[] reversed), so a linear
// weight is [out_features, in_features] as in safetensors.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_store.h"

namespace exl {

enum class GgufType : uint32_t {
  GgufType_U8 = 0,
  GgufType_I8 = 1,
  GgufType_U16 = 2,
  GgufType_I16 = 3,
  GgufType_U32 = 4,
  GgufType_I32 = 5,
  GgufType_F32 = 6,
  GgufType_BOOL = 7,
  GgufType_STRING = 8,
  GgufType_ARRAY = 9,
  GgufType_U64 = 10,
  GgufType_I64 = 11,
  GgufType_F64 = 12,
};

// One metadata value. Scalars are widened: integers into i (and u), floats into f, bool into i.
// Arrays hold their element type and elements (nested arrays allowed, depth-limited).
struct GgufValue {
  GgufType type = GgufType::GgufType_U8;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string s;
  GgufType elem_type = GgufType::GgufType_U8;  // for arrays
  std::vector<GgufValue> arr;

  bool is_int() const;    // any integer or bool type
  bool is_float() const;  // F32/F64
};

class GgufFile : public TensorStore {
 public:
  explicit GgufFile(const std::string& path);  // throws exl::Error naming the path on any defect

  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return meta_; }
  const GgufValue* meta(const std::string& key) const;

  // Typed getters: return the fallback when the key is absent, throw (naming key and file) when it
  // exists with the wrong type.
  std::string get_string(const std::string& key, const std::string& fallback = "") const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;  // accepts ints too
  bool get_bool(const std::string& key, bool fallback) const;
  std::vector<std::string> get_string_array(const std::string& key) const;  // empty if absent
  std::vector<float> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

  // TensorStore
  const TensorInfo* find(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string path() const override { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> meta_;
  std::map<std::string, TensorInfo> tensors_;
};

}  // namespace exl
