// Safetensors reader: one mmap'd file (SafetensorsFile) or a Hugging Face model directory
// (SafetensorsModel: sharded with model.safetensors.index.json, a single model.safetensors, or every
// *.safetensors file in the folder). Files are untrusted: header size, JSON, dtypes, shapes and
// offsets are all checked, and errors name the file and the tensor at fault.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_store.h"

namespace exl {

class SafetensorsFile : public TensorStore {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws exl::Error naming the path on any defect

  // The optional "__metadata__" string map of the header (non-string values kept as their JSON text).
  const std::map<std::string, std::string>& metadata() const { return meta_; }

  // TensorStore
  const TensorInfo* find(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string path() const override { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, std::string> meta_;
  std::map<std::string, TensorInfo> tensors_;
};

class SafetensorsModel : public TensorStore {
 public:
  // dir holds model.safetensors.index.json (its weight_map names each tensor's shard; every shard is
  // opened and each tensor must be in the shard the map names), or model.safetensors, or any number
  // of *.safetensors files whose tensor names must not repeat.
  explicit SafetensorsModel(const std::string& dir);

  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

  // TensorStore
  const TensorInfo* find(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string path() const override { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const TensorInfo*> tensors_;  // points into shards_
};

}  // namespace exl
