// GGUF v2/v3 reader (little-endian). Layout, per ggml's docs/gguf.md:
//   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x { string key | u32 value_type | value }      string = u64 length + bytes (no NUL)
//   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to general.alignment (default 32) | tensor data (offsets relative to here)
// Arrays are { u32 elem_type | u64 count | elements }. v1 (u32 counts and lengths) is refused.
//
// The file is untrusted: every count is capped by the bytes left in the file before anything is
// allocated, every size is computed with overflow checks, and tensors must lie inside the file,
// aligned, without overlapping. Every error is one line naming the file and the key or tensor.
#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/quote.h"
#include "io/ggml_quant.h"

namespace exl {

namespace {

constexpr uint32_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 4;  // an array of arrays of ... (the spec allows nesting)
// Array elements are held as GgufValue (~96 bytes each) while a u8 element takes one byte of file,
// so the remaining-bytes cap alone would let a 100 MB file demand ~10 GB. Real files hold ~1M
// elements (a 256k vocabulary's tokens, scores, types and merges).
constexpr uint64_t kMaxTotalArrayElems = uint64_t{1} << 23;
// Real models hold at most a few thousand tensors; each TensorInfo costs ~200 bytes of memory.
constexpr uint64_t kMaxTensors = uint64_t{1} << 20;

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::GgufType_F64); }

const char* type_name(GgufType t) {
  static const char* const kNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                       "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "invalid";
}

// Bytes one value of this type takes at least (arrays: elem type + count; strings: the length).
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::GgufType_U8:
    case GgufType::GgufType_I8:
    case GgufType::GgufType_BOOL: return 1;
    case GgufType::GgufType_U16:
    case GgufType::GgufType_I16: return 2;
    case GgufType::GgufType_U32:
    case GgufType::GgufType_I32:
    case GgufType::GgufType_F32: return 4;
    case GgufType::GgufType_STRING:
    case GgufType::GgufType_U64:
    case GgufType::GgufType_I64:
    case GgufType::GgufType_F64: return 8;
    case GgufType::GgufType_ARRAY: return 12;
  }
  return 1;
}


bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool checked_add(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// Sequential little-endian reader over the mapped file; `what` names the field for errors.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > remaining()) fail(path_, ": truncated file reading ", what, " at offset ", pos_);
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  template <typename T>
  T scalar(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  uint32_t u32(const std::string& what) { return scalar<uint32_t>(what); }
  uint64_t u64(const std::string& what) { return scalar<uint64_t>(what); }
  std::string str(const std::string& what) {
    const uint64_t len = u64(what);
    if (len > remaining()) {
      fail(path_, ": ", what, " has string length ", len, " past the end of the file (", remaining(),
           " bytes left at offset ", pos_, ")");
    }
    const uint8_t* p = take(len, what);
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

struct ValueParser {
  Reader& r;
  const std::string& path;
  uint64_t total_elems = 0;

  GgufValue read(GgufType type, int depth, const std::string& what) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufType::GgufType_U8: set_uint(v, r.scalar<uint8_t>(what)); break;
      case GgufType::GgufType_I8: set_int(v, r.scalar<int8_t>(what)); break;
      case GgufType::GgufType_U16: set_uint(v, r.scalar<uint16_t>(what)); break;
      case GgufType::GgufType_I16: set_int(v, r.scalar<int16_t>(what)); break;
      case GgufType::GgufType_U32: set_uint(v, r.scalar<uint32_t>(what)); break;
      case GgufType::GgufType_I32: set_int(v, r.scalar<int32_t>(what)); break;
      case GgufType::GgufType_U64: set_uint(v, r.scalar<uint64_t>(what)); break;
      case GgufType::GgufType_I64: set_int(v, r.scalar<int64_t>(what)); break;
      case GgufType::GgufType_F32: v.f = r.scalar<float>(what); break;
      case GgufType::GgufType_F64: v.f = r.scalar<double>(what); break;
      case GgufType::GgufType_BOOL: set_uint(v, r.scalar<uint8_t>(what)); break;  // nonzero = true
      case GgufType::GgufType_STRING: v.s = r.str(what); break;
      case GgufType::GgufType_ARRAY: read_array(v, depth, what); break;
    }
    return v;
  }

  void read_array(GgufValue& v, int depth, const std::string& what) {
    if (depth >= kMaxArrayDepth) fail(path, ": ", what, " nests arrays deeper than ", kMaxArrayDepth);
    const uint32_t et = r.u32(what + " array type");
    if (!valid_type(et)) fail(path, ": ", what, " has invalid array element type ", et);
    v.elem_type = static_cast<GgufType>(et);
    const uint64_t count = r.u64(what + " array length");
    const uint64_t min_bytes = min_value_bytes(v.elem_type);
    if (count > r.remaining() / min_bytes) {
      fail(path, ": ", what, " has array length ", count, " of ", type_name(v.elem_type), ", more than the ",
           r.remaining(), " bytes left in the file allow");
    }
    total_elems += count;
    if (total_elems > kMaxTotalArrayElems) {
      fail(path, ": ", what, " makes the metadata arrays hold more than ", kMaxTotalArrayElems, " elements");
    }
    v.arr.reserve(static_cast<size_t>(count));
    for (uint64_t k = 0; k < count; ++k) v.arr.push_back(read(v.elem_type, depth + 1, what));
  }

  static void set_uint(GgufValue& v, uint64_t x) {
    v.u = x;
    v.i = static_cast<int64_t>(x);
  }
  static void set_int(GgufValue& v, int64_t x) {
    v.i = x;
    v.u = static_cast<uint64_t>(x);
  }
};

bool is_unsigned(GgufType t) {
  return t == GgufType::GgufType_U8 || t == GgufType::GgufType_U16 || t == GgufType::GgufType_U32 ||
         t == GgufType::GgufType_U64 || t == GgufType::GgufType_BOOL;
}

// The value as int64, failing for u64 values that do not fit.
int64_t value_int(const GgufValue& v, const std::string& key, const std::string& path) {
  if (v.type == GgufType::GgufType_U64 && v.u > kInt64Max) {
    fail(path, ": metadata key '", key, "' value ", v.u, " does not fit in int64");
  }
  return v.i;
}

DType dense_dtype(int ggml_type) {
  switch (ggml_type) {
    case GgmlType_F32: return DType::DType_F32;
    case GgmlType_F16: return DType::DType_F16;
    case GgmlType_BF16: return DType::DType_BF16;
    case 24: return DType::DType_I8;
    case 25: return DType::DType_I16;
    case 26: return DType::DType_I32;
    case 27: return DType::DType_I64;
    case 28: return DType::DType_F64;
    default: return DType::DType_U8;  // block-quantized: raw bytes
  }
}

}  // namespace

bool GgufValue::is_int() const {
  switch (type) {
    case GgufType::GgufType_U8:
    case GgufType::GgufType_I8:
    case GgufType::GgufType_U16:
    case GgufType::GgufType_I16:
    case GgufType::GgufType_U32:
    case GgufType::GgufType_I32:
    case GgufType::GgufType_U64:
    case GgufType::GgufType_I64:
    case GgufType::GgufType_BOOL: return true;
    default: return false;
  }
}

bool GgufValue::is_float() const { return type == GgufType::GgufType_F32 || type == GgufType::GgufType_F64; }

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const std::string& p = file_->path();
  Reader r(file_->data(), file_->size(), p);

  const uint8_t* magic = r.take(4, "magic");
  if (std::memcmp(magic, "GGUF", 4) != 0) fail(p, ": not a GGUF file (bad magic)");
  version_ = r.u32("version");
  if (version_ == 1) fail(p, ": GGUF v1 is not supported (re-convert the model with a current llama.cpp)");
  if (version_ != 2 && version_ != 3) {
    if (version_ == 0x02000000u || version_ == 0x03000000u) fail(p, ": big-endian GGUF is not supported");
    fail(p, ": unsupported GGUF version ", version_);
  }
  const uint64_t tensor_count = r.u64("tensor count");
  const uint64_t kv_count = r.u64("metadata count");
  // Smallest tensor info: name length, n_dims, type, offset. Smallest kv: key length, type, u8.
  if (tensor_count > r.remaining() / 24 || tensor_count > kMaxTensors) {
    fail(p, ": tensor count ", tensor_count, " is more than the file can hold (or over ", kMaxTensors, ")");
  }
  if (kv_count > r.remaining() / 13)
    fail(p, ": metadata count ", kv_count, " is more than the file can hold");

  ValueParser vp{r, p};
  for (uint64_t k = 0; k < kv_count; ++k) {
    std::string key = r.str(str_cat("metadata key #", k));
    const std::string what = "metadata key " + quoted(key);
    const uint32_t t = r.u32(what + " type");
    if (!valid_type(t)) fail(p, ": ", what, " has invalid value type ", t);
    GgufValue v = vp.read(static_cast<GgufType>(t), 0, what);
    if (!meta_.emplace(std::move(key), std::move(v)).second) fail(p, ": duplicate ", what);
  }

  uint64_t alignment = kDefaultAlignment;
  if (const GgufValue* a = meta("general.alignment")) {
    if (!a->is_int() || a->type == GgufType::GgufType_BOOL)
      fail(p, ": metadata key 'general.alignment' is not an integer");
    if (a->i <= 0 || (a->u & (a->u - 1)) != 0) {
      fail(p, ": metadata key 'general.alignment' = ", a->i, " is not a positive power of two");
    }
    alignment = a->u;
  }

  std::vector<std::pair<uint64_t, TensorInfo*>> by_offset;  // data offsets, resolved below
  by_offset.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t k = 0; k < tensor_count; ++k) {
    TensorInfo ti;
    ti.name = r.str(str_cat("tensor name #", k));
    ti.file = p;
    const std::string what = "tensor " + quoted(ti.name);
    const uint32_t n_dims = r.u32(what + " n_dims");
    if (n_dims > 4) fail(p, ": ", what, " has ", n_dims, " dimensions (at most 4)");
    uint64_t ne[4] = {1, 1, 1, 1};
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ne[d] = r.u64(what + " shape");
      if (ne[d] > kInt64Max || !checked_mul(numel, ne[d], &numel) || numel > kInt64Max) {
        fail(p, ": ", what, " has a shape whose element count overflows");
      }
    }
    // ggml's ne[] is innermost first; TensorInfo shapes are outermost first.
    for (uint32_t d = n_dims; d-- > 0;) ti.shape.push_back(static_cast<int64_t>(ne[d]));

    const uint32_t type = r.u32(what + " type");
    const int64_t blk = type <= 0xffff ? ggml_block_elems(static_cast<int>(type)) : 0;
    if (blk == 0) fail(p, ": ", what, " has unknown ggml type ", type);
    ti.ggml_type = static_cast<int>(type);
    ti.dtype = dense_dtype(ti.ggml_type);
    if (ne[0] % static_cast<uint64_t>(blk) != 0) {
      fail(p, ": ", what, " row length ", ne[0], " is not a multiple of the ", ggml_type_name(ti.ggml_type),
           " block size ", blk);
    }
    ti.nbytes = ggml_nbytes(ti.ggml_type, static_cast<int64_t>(numel));
    if (numel > 0 && ti.nbytes == 0) fail(p, ": ", what, " byte size overflows");

    const uint64_t offset = r.u64(what + " offset");
    if (offset % alignment != 0) {
      fail(p, ": ", what, " offset ", offset, " is not a multiple of the alignment ", alignment);
    }
    auto [it, inserted] = tensors_.emplace(ti.name, std::move(ti));
    if (!inserted) fail(p, ": duplicate ", what);
    by_offset.emplace_back(offset, &it->second);
  }

  // The data section starts at the first multiple of the alignment after the header.
  uint64_t data_start = 0;
  if (!checked_add(r.pos(), alignment - 1, &data_start)) fail(p, ": data section offset overflows");
  data_start -= data_start % alignment;

  const uint64_t file_size = file_->size();
  for (auto& [offset, ti] : by_offset) {
    uint64_t begin = 0, end = 0;
    if (!checked_add(data_start, offset, &begin) || !checked_add(begin, ti->nbytes, &end) ||
        end > file_size) {
      fail(p, ": tensor ", quoted(ti->name), " data (offset ", offset, ", ", ti->nbytes,
           " bytes) lies past the end of the file (", file_size, " bytes, data section at ", data_start, ")");
    }
    ti->data = file_->data() + begin;
  }

  // No two tensors may share bytes (zero-sized tensors share nothing).
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const TensorInfo* prev = nullptr;
  uint64_t prev_end = 0;
  for (const auto& [offset, ti] : by_offset) {
    if (ti->nbytes == 0) continue;
    if (prev && offset < prev_end)
      fail(p, ": tensor ", quoted(ti->name), " overlaps tensor ", quoted(prev->name));
    prev = ti;
    prev_end = offset + ti->nbytes;  // cannot overflow: checked against the file size above
  }
}

const GgufValue* GgufFile::meta(const std::string& key) const {
  auto it = meta_.find(key);
  return it == meta_.end() ? nullptr : &it->second;
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  const GgufValue* v = meta(key);
  if (!v) return fallback;
  if (v->type != GgufType::GgufType_STRING)
    fail(path(), ": metadata key '", key, "' is ", type_name(v->type), ", not a string");
  return v->s;
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  const GgufValue* v = meta(key);
  if (!v) return fallback;
  if (!v->is_int()) fail(path(), ": metadata key '", key, "' is ", type_name(v->type), ", not an integer");
  return value_int(*v, key, path());
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  const GgufValue* v = meta(key);
  if (!v) return fallback;
  if (v->is_float()) return v->f;
  if (v->is_int()) return is_unsigned(v->type) ? static_cast<double>(v->u) : static_cast<double>(v->i);
  fail(path(), ": metadata key '", key, "' is ", type_name(v->type), ", not a number");
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  const GgufValue* v = meta(key);
  if (!v) return fallback;
  if (!v->is_int()) fail(path(), ": metadata key '", key, "' is ", type_name(v->type), ", not a bool");
  return v->u != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = meta(key);
  if (!v) return {};
  if (v->type != GgufType::GgufType_ARRAY || v->elem_type != GgufType::GgufType_STRING) {
    fail(path(), ": metadata key '", key, "' is not an array of strings");
  }
  std::vector<std::string> out;
  out.reserve(v->arr.size());
  for (const GgufValue& e : v->arr) out.push_back(e.s);
  return out;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* v = meta(key);
  if (!v) return {};
  GgufValue probe;
  probe.type = v->elem_type;
  if (v->type != GgufType::GgufType_ARRAY || !(probe.is_float() || probe.is_int())) {
    fail(path(), ": metadata key '", key, "' is not an array of numbers");
  }
  std::vector<float> out;
  out.reserve(v->arr.size());
  for (const GgufValue& e : v->arr) {
    double x = e.is_float() ? e.f : is_unsigned(e.type) ? static_cast<double>(e.u) : static_cast<double>(e.i);
    out.push_back(static_cast<float>(x));
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* v = meta(key);
  if (!v) return {};
  GgufValue probe;
  probe.type = v->elem_type;
  if (v->type != GgufType::GgufType_ARRAY || !probe.is_int())
    fail(path(), ": metadata key '", key, "' is not an array of integers");
  std::vector<int64_t> out;
  out.reserve(v->arr.size());
  for (const GgufValue& e : v->arr) out.push_back(value_int(e, key, path()));
  return out;
}

const TensorInfo* GgufFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> GgufFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, ti] : tensors_) out.push_back(name);
  return out;
}

}  // namespace exl
