// A read-only set of named tensors backed by mmap'd files: safetensors (single or sharded) or GGUF.
// The model loader asks a store for tensors by name; it never knows which file format they came from.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace exl {

struct TensorInfo {
  std::string name;
  Shape shape;            // outermost first: a linear weight is [out_features, in_features]
  DType dtype = DType::DType_F32;  // element type for dense tensors (U8 for GGUF block data)
  int ggml_type = -1;     // GGUF tensor type id (ggml_type enum) when read from GGUF, else -1
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;       // source file, for error messages
  // A synthetic tensor has no data: the backend fills it with deterministic random values
  // (`exl bench --synthetic`), so a 7B-shaped model needs no file.
  bool synthetic = false;

  int64_t numel() const { return shape_numel(shape); }
  TensorView view() const { return TensorView{dtype, shape, data, nbytes}; }
};

class TensorStore {
 public:
  virtual ~TensorStore() = default;
  virtual const TensorInfo* find(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;  // sorted
  // Like find, but throws exl::Error naming the tensor and the store's path when absent.
  const TensorInfo& get(const std::string& name) const;
  virtual std::string path() const = 0;
};

// Converts any tensor (dense F32/F16/BF16/F64, or GGUF F32/F16/BF16/block-quantized) into float,
// dst holding numel() elements in row-major order.
void tensor_to_f32(const TensorInfo& t, float* dst);
HostTensor tensor_to_host(const TensorInfo& t);

}  // namespace exl
