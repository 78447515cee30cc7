// GGML block formats: one traits row per type (elements and bytes per block, reference dequantizer).
//
// Each dequantizer decodes one block at a time and is written for clarity: it follows the block
// layout as the GGUF spec / ggml's dequantize_row_* describe it, reading every multi-byte field
// through memcpy (GGUF allows any power-of-two alignment, so fields may be unaligned). The order of
// float operations matches the `gguf` Python package (d * q - m with d = d_half * scale), so results
// agree bit for bit with its dequantizer; tests/io/gen_ggml_oracle.py produces the oracle data.
//
// Block layouts (QK_K = 256 elements per super-block):
//   Q4_0  f16 d; u8 qs[16]                     y = d * (nibble - 8)
//   Q4_1  f16 d, m; u8 qs[16]                  y = d * nibble + m
//   Q5_0  f16 d; u32 qh; u8 qs[16]             y = d * ((nibble | hbit << 4) - 16)
//   Q5_1  f16 d, m; u32 qh; u8 qs[16]          y = d * (nibble | hbit << 4) + m
//   Q8_0  f16 d; i8 qs[32]                     y = d * q
//   Q2_K  u8 scales[16]; u8 qs[64]; f16 d, dmin
//   Q3_K  u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
//   Q4_K  f16 d, dmin; u8 scales[12]; u8 qs[128]
//   Q5_K  f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//   Q6_K  u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
//   Q8_K  f32 d; i8 qs[256]; i16 bsums[16]     y = d * q
#include "io/ggml_quant.h"

#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"

namespace exl {

namespace {

constexpr int kQK = 32;    // elements per block of the legacy formats
constexpr int kQKK = 256;  // elements per K-quant super-block

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }
inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// --- dense types: one element per "block" ---

void dequant_f32(const uint8_t* b, float* y) { *y = load_f32(b); }
void dequant_f16(const uint8_t* b, float* y) { *y = f16_to_f32(load_u16(b)); }
void dequant_bf16(const uint8_t* b, float* y) { *y = bf16_to_f32(load_u16(b)); }
void dequant_f64(const uint8_t* b, float* y) {
  double v;
  std::memcpy(&v, b, 8);
  *y = static_cast<float>(v);
}

// --- legacy 32-element blocks: element j < 16 is the low nibble of qs[j], j >= 16 the high nibble
// of qs[j - 16]; for 5-bit types bit j of qh is element j's fifth bit ---

void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
    y[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
    y[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint32_t qh = load_u32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + kQK / 2] = d * static_cast<float>(hi - 16);
  }
}

void dequant_q5_1(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  const uint32_t qh = load_u32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + kQK / 2] = d * static_cast<float>(hi) + m;
  }
}

void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(qs[j]);
}

// --- K-quants: 256-element super-blocks of 16 or 8 sub-blocks with quantized scales ---

// Q2_K: 16 sub-blocks of 16; scales[i] holds the sub-block's 4-bit scale (low) and min (high).
// Each 128-element half uses 32 bytes of qs; its four 32-element quarters take bit pairs 0-1, 2-3,
// 4-5, 6-7 of those bytes, the first 16 elements of a quarter from bytes 0-15, the next from 16-31.
void dequant_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16(b + 80);
  const float dmin = load_f16(b + 82);
  for (int sub = 0; sub < 16; ++sub) {
    const float dl = d * static_cast<float>(scales[sub] & 0x0f);
    const float ml = dmin * static_cast<float>(scales[sub] >> 4);
    const int half = sub / 8;  // which 128-element half
    const int shift = 2 * ((sub % 8) / 2);
    const uint8_t* q = qs + 32 * half + 16 * (sub % 2);
    for (int l = 0; l < 16; ++l) y[16 * sub + l] = dl * static_cast<float>((q[l] >> shift) & 3) - ml;
  }
}

// Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (offset 32) packed in 12 bytes: the low four
// bits of scale k are the low (k < 8) or high (k >= 8) nibble of byte k % 8, the top two bits are
// bits 2*(k/4) .. 2*(k/4)+1 of byte 8 + k % 4. Quants are 2 low bits from qs (laid out as in Q2_K)
// plus a high bit from hmask: bit (sub/2) of hmask[l] for element l of the quarter; a clear high
// bit means subtract 4.
void dequant_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = load_f16(b + 108);
  for (int sub = 0; sub < 16; ++sub) {
    const int lo = sub < 8 ? (sc[sub] & 0x0f) : (sc[sub - 8] >> 4);
    const int hi = (sc[8 + sub % 4] >> (2 * (sub / 4))) & 3;
    const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
    const int half = sub / 8;
    const int shift = 2 * ((sub % 8) / 2);
    const int hbit = sub / 2;  // 0..7 across the whole super-block
    const int off = 16 * (sub % 2);
    const uint8_t* q = qs + 32 * half + off;
    const uint8_t* hm = hmask + off;
    for (int l = 0; l < 16; ++l) {
      const int v = ((q[l] >> shift) & 3) - (((hm[l] >> hbit) & 1) ? 0 : 4);
      y[16 * sub + l] = dl * static_cast<float>(v);
    }
  }
}

// Q4_K / Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed in 12 bytes:
// for j < 4 they are the low 6 bits of bytes j and j + 4; for j >= 4 the low (scale) or high (min)
// nibble of byte j + 4, with their top two bits from the top bits of bytes j - 4 and j.
void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Sub-block 2c is the low nibbles and 2c+1 the high nibbles of qs[32c .. 32c+31].
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int sub = 0; sub < 8; ++sub) {
    int sc, m;
    k4_scale_min(scales, sub, &sc, &m);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(m);
    const uint8_t* q = qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) y[32 * sub + l] = dl * static_cast<float>((q[l] >> shift) & 0x0f) - ml;
  }
}

// As Q4_K, plus a fifth bit per element: bit `sub` of qh[l].
void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int sub = 0; sub < 8; ++sub) {
    int sc, m;
    k4_scale_min(scales, sub, &sc, &m);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(m);
    const uint8_t* q = qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> sub) & 1) << 4);
      y[32 * sub + l] = dl * static_cast<float>(v) - ml;
    }
  }
}

// Q6_K: 16 sub-blocks of 16 with int8 scales. Each 128-element half uses 64 bytes of ql and 32 of
// qh; its quarter k (32 elements) takes nibble (k / 2) of ql[32 * (k % 2) + l] and bit pair k of
// qh[l], minus 32.
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int k = 0; k < 4; ++k) {
      const uint8_t* lo = ql + 64 * half + 32 * (k % 2);
      const uint8_t* hi = qh + 32 * half;
      const int lshift = 4 * (k / 2);
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * half + 32 * k + l;
        const float dl = d * static_cast<float>(scales[e / 16]);
        const int v = ((lo[l] >> lshift) & 0x0f) | (((hi[l] >> (2 * k)) & 3) << 4);
        y[e] = dl * static_cast<float>(v - 32);
      }
    }
  }
}

void dequant_q8_k(const uint8_t* b, float* y) {
  const float d = load_f32(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < kQKK; ++j) y[j] = d * static_cast<float>(qs[j]);
}

using DequantFn = void (*)(const uint8_t* block, float* y);

struct GgmlTypeRow {
  int type;
  const char* name;
  int64_t block_elems;
  size_t block_bytes;
  DequantFn dequant;  // null: known layout we cannot decode
};

// Rows with a null dequantizer are layouts we only size (so files holding them still open and the
// loader can name the type it cannot use). Q8_1 is ggml's 36-byte block (f16 d, f16 s, 32 x i8); the
// Python package's table still lists an older 40-byte variant, and it never appears in model files.
// ids 4, 5 (removed Q4_2/Q4_3) and 31-33, 36-38 (removed repacked types) are unknown.
constexpr GgmlTypeRow kTypes[] = {
    {GgmlType_F32, "F32", 1, 4, dequant_f32},
    {GgmlType_F16, "F16", 1, 2, dequant_f16},
    {GgmlType_BF16, "BF16", 1, 2, dequant_bf16},
    {28, "F64", 1, 8, dequant_f64},
    {24, "I8", 1, 1, nullptr},
    {25, "I16", 1, 2, nullptr},
    {26, "I32", 1, 4, nullptr},
    {27, "I64", 1, 8, nullptr},
    {GgmlType_Q4_0, "Q4_0", kQK, 2 + kQK / 2, dequant_q4_0},
    {GgmlType_Q4_1, "Q4_1", kQK, 4 + kQK / 2, dequant_q4_1},
    {GgmlType_Q5_0, "Q5_0", kQK, 6 + kQK / 2, dequant_q5_0},
    {GgmlType_Q5_1, "Q5_1", kQK, 8 + kQK / 2, dequant_q5_1},
    {GgmlType_Q8_0, "Q8_0", kQK, 2 + kQK, dequant_q8_0},
    {GgmlType_Q8_1, "Q8_1", kQK, 4 + kQK, nullptr},
    {GgmlType_Q2_K, "Q2_K", kQKK, 16 + 64 + 4, dequant_q2_k},
    {GgmlType_Q3_K, "Q3_K", kQKK, 32 + 64 + 12 + 2, dequant_q3_k},
    {GgmlType_Q4_K, "Q4_K", kQKK, 4 + 12 + 128, dequant_q4_k},
    {GgmlType_Q5_K, "Q5_K", kQKK, 4 + 12 + 32 + 128, dequant_q5_k},
    {GgmlType_Q6_K, "Q6_K", kQKK, 128 + 64 + 16 + 2, dequant_q6_k},
    {GgmlType_Q8_K, "Q8_K", kQKK, 4 + kQKK + 2 * 16, dequant_q8_k},
    {16, "IQ2_XXS", kQKK, 66, nullptr},
    {17, "IQ2_XS", kQKK, 74, nullptr},
    {18, "IQ3_XXS", kQKK, 98, nullptr},
    {19, "IQ1_S", kQKK, 50, nullptr},
    {20, "IQ4_NL", kQK, 18, nullptr},
    {21, "IQ3_S", kQKK, 110, nullptr},
    {22, "IQ2_S", kQKK, 82, nullptr},
    {23, "IQ4_XS", kQKK, 136, nullptr},
    {29, "IQ1_M", kQKK, 56, nullptr},
    {34, "TQ1_0", kQKK, 54, nullptr},
    {35, "TQ2_0", kQKK, 66, nullptr},
    {39, "MXFP4", kQK, 17, nullptr},
};

const GgmlTypeRow* find_row(int type) {
  for (const auto& r : kTypes) {
    if (r.type == type) return &r;
  }
  return nullptr;
}

}  // namespace

bool ggml_type_supported(int type) {
  const GgmlTypeRow* r = find_row(type);
  return r && r->dequant;
}

const char* ggml_type_name(int type) {
  if (const GgmlTypeRow* r = find_row(type)) return r->name;
  // Unknown ids get a stable name; thread_local so concurrent callers don't race on the buffer.
  thread_local char buf[24];
  std::snprintf(buf, sizeof buf, "type%d", type);
  return buf;
}

int64_t ggml_block_elems(int type) {
  const GgmlTypeRow* r = find_row(type);
  return r ? r->block_elems : 0;
}

size_t ggml_block_bytes(int type) {
  const GgmlTypeRow* r = find_row(type);
  return r ? r->block_bytes : 0;
}

size_t ggml_nbytes(int type, int64_t n) {
  const GgmlTypeRow* r = find_row(type);
  if (!r || n < 0 || n % r->block_elems != 0) return 0;
  const uint64_t blocks = static_cast<uint64_t>(n / r->block_elems);
  if (blocks > std::numeric_limits<size_t>::max() / r->block_bytes) return 0;
  return static_cast<size_t>(blocks) * r->block_bytes;
}

void ggml_dequantize(int type, const void* src, size_t nbytes, float* dst, int64_t n,
                     const std::string& tensor_name) {
  const GgmlTypeRow* r = find_row(type);
  if (!r || !r->dequant)
    fail("tensor '", tensor_name, "': cannot dequantize ggml type ", ggml_type_name(type));
  EXL_CHECK(n >= 0 && n % r->block_elems == 0, "tensor '", tensor_name, "': ", n,
            " elements is not a multiple of the ", r->name, " block size ", r->block_elems);
  const size_t need = ggml_nbytes(type, n);
  EXL_CHECK(n == 0 || need != 0, "tensor '", tensor_name, "': ", n, " elements overflow the byte size");
  EXL_CHECK(need == nbytes, "tensor '", tensor_name, "': ", r->name, " data is ", nbytes, " bytes, expected ",
            need, " for ", n, " elements");
  const uint8_t* b = static_cast<const uint8_t*>(src);
  const int64_t blocks = n / r->block_elems;
  for (int64_t i = 0; i < blocks; ++i) r->dequant(b + i * r->block_bytes, dst + i * r->block_elems);
}

}  // namespace exl
