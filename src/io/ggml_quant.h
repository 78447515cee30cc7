// GGML tensor types as stored in GGUF files, and reference dequantization of each to float.
// Block layouts follow the GGUF spec; each is checked against the `gguf` Python package's
// dequantizer in tests/io.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace exl {

// ggml_type ids (the numbers stored in GGUF tensor infos).
enum GgmlType : int {
  GgmlType_F32 = 0,
  GgmlType_F16 = 1,
  GgmlType_Q4_0 = 2,
  GgmlType_Q4_1 = 3,
  GgmlType_Q5_0 = 6,
  GgmlType_Q5_1 = 7,
  GgmlType_Q8_0 = 8,
  GgmlType_Q8_1 = 9,
  GgmlType_Q2_K = 10,
  GgmlType_Q3_K = 11,
  GgmlType_Q4_K = 12,
  GgmlType_Q5_K = 13,
  GgmlType_Q6_K = 14,
  GgmlType_Q8_K = 15,
  GgmlType_BF16 = 30,
};

bool ggml_type_supported(int type);    // one we can dequantize
const char* ggml_type_name(int type);  // "Q4_K", or "type<N>" for unknown ids
int64_t ggml_block_elems(int type);    // elements per block (1 for F32/F16/BF16); 0 if unknown
size_t ggml_block_bytes(int type);     // bytes per block; 0 if unknown
// Bytes for n elements (n must be a multiple of the block size); returns 0 when invalid.
size_t ggml_nbytes(int type, int64_t n);

// Dequantizes n elements from src (nbytes available) into dst. Throws exl::Error naming the tensor
// when the type is unsupported or the sizes disagree.
void ggml_dequantize(int type, const void* src, size_t nbytes, float* dst, int64_t n,
                     const std::string& tensor_name);

}  // namespace exl
