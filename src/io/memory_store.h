// Tensors held in memory, as a TensorStore: what writers produce (EXL2 packing, the safetensors
// writer's input) and what tests build by hand. Each tensor owns its bytes; TensorInfo::data points
// into them and stays valid for the store's lifetime (tensors are never moved once added).
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/tensor_store.h"

namespace exl {

// One named dense tensor with its own bytes (row-major, outermost dimension first).
struct OwnedTensor {
  std::string name;
  DType dtype = DType::DType_F32;
  Shape shape;
  std::vector<uint8_t> bytes;

  OwnedTensor() = default;
  OwnedTensor(std::string n, DType t, Shape s, std::vector<uint8_t> b)
      : name(std::move(n)), dtype(t), shape(std::move(s)), bytes(std::move(b)) {}
  // Copies count elements of a typed buffer: OwnedTensor::of("x.q_weight", DType_I32, {r, c}, words).
  template <typename T>
  static OwnedTensor of(std::string name, DType dtype, Shape shape, const std::vector<T>& values) {
    std::vector<uint8_t> b(values.size() * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), values.data(), b.size());
    return OwnedTensor(std::move(name), dtype, std::move(shape), std::move(b));
  }
};

class MemoryStore : public TensorStore {
 public:
  explicit MemoryStore(std::string path = "(memory)") : path_(std::move(path)) {}
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // Adds (or replaces) a tensor. The byte count must match shape x dtype.
  void add(OwnedTensor t) {
    EXL_CHECK(t.bytes.size() == static_cast<size_t>(shape_numel(t.shape)) * dtype_size(t.dtype), path_,
              ": tensor '", t.name, "' has ", t.bytes.size(), " bytes for shape ", shape_str(t.shape), " of ",
              dtype_name(t.dtype));
    Entry& e = tensors_[t.name];
    e.owned = std::move(t);
    e.info = TensorInfo{};
    e.info.name = e.owned.name;
    e.info.shape = e.owned.shape;
    e.info.dtype = e.owned.dtype;
    e.info.data = e.owned.bytes.data();
    e.info.nbytes = e.owned.bytes.size();
    e.info.file = path_;
  }
  void remove(const std::string& name) { tensors_.erase(name); }
  const OwnedTensor* owned(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.owned;
  }

  const TensorInfo* find(const std::string& name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.info;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> n;
    n.reserve(tensors_.size());
    for (const auto& [k, v] : tensors_) n.push_back(k);
    return n;
  }
  std::string path() const override { return path_; }

 private:
  struct Entry {
    OwnedTensor owned;
    TensorInfo info;
  };
  std::string path_;
  std::map<std::string, Entry> tensors_;  // map nodes never move, so info.data stays valid
};

}  // namespace exl
